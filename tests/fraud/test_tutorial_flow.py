"""The tutorial's own four datasets through import → push → worker → report (docs/design.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from batchml.fraud.evaluation.metrics import roc_auc
from batchml.fraud.features import pipeline
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import checkpoint
from batchml.fraud.models import lineage as lineage_mod
from batchml.fraud.models.model_base import fraud_scores
from batchml.queue import open_queue
from batchml.storage import Storage
from tests.fraud.test_datasets import TUTORIAL
from tests.support.cli import run_cli

DAYS = ["2018-04-01", "2018-04-02", "2018-04-03", "2018-04-04"]


def test_tutorial_datasets_end_to_end(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "root")
    cli = ("--root", root)
    assert run_cli(capsys, *cli, "data", "import", "--trust-pickle", str(TUTORIAL)).code == 0
    pushed = run_cli(capsys, *cli, "queue", "push")
    # 4 train items and 1 features item (one block of 4 days)
    assert pushed.code == 0 and "4 day(s) 2018-04-01 … 2018-04-04; 5 added" in pushed.out
    again = run_cli(capsys, *cli, "queue", "push")
    assert "4 exists" in again.out  # pushing the same datasets twice is a no-op

    worker = run_cli(capsys, *cli, "worker", "--poll", "0.05")
    assert worker.code == 0, worker.err
    assert "Worker with sessionID:" in worker.err and "Queue empty, exiting" in worker.err
    assert worker.err.count("Processing dataset: 2018-04-0") == 5  # 1 features block, 4 trains

    report = run_cli(capsys, *cli, "report")
    assert [
        line.split(": ")[1]
        for line in report.out.splitlines()
        if line.startswith("Training dataset")
    ] == DAYS
    for needle in ("Report generated on:", "Model checkpoint:", "---", "Accuracy on training data:",
                   "Accuracy on testing data:", "ROC AUC on testing data:",
                   "Average precision on testing data:"):  # fmt: skip
        assert report.out.count(needle) == 4, needle
    data = json.loads((Path(root) / "runs/default/report.json").read_text())
    assert [v["version"] for v in data["versions"]] == [1, 2, 3, 4]
    for version in data["versions"]:
        ckpt = Path(root) / version["checkpoint"]
        assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == version["sha256"]
        assert (ckpt.parent / (ckpt.name + ".sha256")).read_text().startswith(version["sha256"])
        assert version["test"]["datasets"] == ["datasets/testing/test_dataset.parquet"]

    # The tutorial's model predicts "not fraud" for everything (AUC 0.5); ours ranks frauds.
    storage, spec = Storage(root), FeatureSpec()
    queue = open_queue(f"sqlite:///{root}/queue.db")
    head = queue.lineage_head("default")
    assert head.checkpoint is not None
    _, meta = checkpoint.load_file(storage.resolve(head.checkpoint.final), head.checkpoint.sha256)
    trained_as = lineage_mod.ModelConfig(meta["kind"], tuple(sorted(meta["params"].items())))
    model, _ = lineage_mod.load_head(storage, head, trained_as, spec.inputs)
    assert "TX_FRAUD" not in meta["inputs"] and "CUSTOMER_ID" not in meta["inputs"]
    table = pipeline.load_dataset_features(storage, "datasets/testing/test_dataset.parquet", spec)
    X, y = pipeline.xy(table, spec)
    ours = roc_auc(y, fraud_scores(model, X))
    tutorial = roc_auc(y, np.zeros(len(y)))
    assert tutorial == 0.5
    assert ours is not None and ours > 0.6
    assert data["final"]["test"]["roc_auc"] == pytest.approx(ours)

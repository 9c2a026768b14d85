"""fraud.train through real workers: per-version metrics, determinism, evaluation of the head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.errors import ConfigError
from batchml.fraud.evaluation import test_cache
from batchml.fraud.evaluation.evaluate import Protocol, evaluate
from batchml.fraud.models.lineage import ModelConfig
from batchml.report import write_reports
from tests.support.fraud_env import Env, make_env, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The default model trained on the small workload by one worker."""
    env = make_env(tmp_path_factory.mktemp("trained"))
    assert train(env) == [exitcodes.OK]
    return env


def test_every_day_makes_one_version_with_train_and_test_metrics(trained: Env) -> None:
    chain = trained.queue.lineage("default")
    assert [h.version for h in chain] == list(range(1, len(trained.train_days) + 1))
    assert [h.dataset for h in chain] == trained.train_days
    report = write_reports(trained.storage, "default", trained.queue)
    last = report["versions"][-1]
    assert last["train"]["rows"] > 0 and last["train"]["roc_auc"] > 0.8
    test = last["test"]
    assert test["test_days"] == trained.test_days
    assert test["top_k"] == 100 and 0.0 <= test["card_precision_at_k"] <= 1.0
    assert test["roc_auc"] > 0.75 and test["excluded_known_compromised"] > 0
    assert set(last["seconds"]) >= {"io", "features", "train", "evaluate"}
    assert last["train"]["sampled_rows"] < last["train"]["rows"]  # the kept rows, weighted
    records = (json.loads(p.read_text()) for p in (trained.root / "runs/default/records").glob("*"))
    steps = [r["result"]["steps"] for r in records if r["task"] == "fraud.train"]
    assert len(steps) == len(trained.train_days) and set(steps[-1]) == {
        "load checkpoint", "load features", "grow trees", "metrics", "test set", "evaluation",
        "save checkpoint", "publish",
    }  # fmt: skip
    text = (trained.root / "runs/default/report.txt").read_text()
    assert text.count("Training dataset:") == len(trained.train_days)
    assert "Card precision@100 on testing data" in text


def test_the_per_version_test_equals_the_evaluation_of_that_version(trained: Env) -> None:
    """The report's test figures of the head are what `fraud evaluate` says of it (the report
    sums the boosted trees batch by batch, `evaluate` all at once: equal up to rounding)."""
    report = json.loads((trained.root / "runs/default/report.json").read_text())
    result = evaluate(trained.storage, trained.queue, "default")
    assert result["test_days"] == trained.test_days
    assert result["model"]["kind"] == "lgbm"
    m, test = result["metrics"], report["versions"][-1]["test"]
    for key in ("roc_auc", "average_precision", "card_precision_at_k", "rows"):
        assert m[key] == pytest.approx(test[key], abs=1e-9)


def test_evaluation_refuses_a_test_period_inside_the_label_delay(trained: Env) -> None:
    early = Protocol(test_start=trained.days[len(trained.train_days) + 2])
    with pytest.raises(ConfigError, match="only known 7 days later"):
        evaluate(trained.storage, trained.queue, "default", protocol=early)


def test_every_earlier_fraud_known_is_a_stricter_test(trained: Env) -> None:
    usual = evaluate(trained.storage, trained.queue, "default")
    strict = evaluate(trained.storage, trained.queue, "default", protocol=Protocol(known_days=0))
    assert strict["excluded_known_compromised"] > usual["excluded_known_compromised"]
    assert strict["metrics"]["rows"] < usual["metrics"]["rows"]


def test_two_workers_make_the_same_lineage_bit_for_bit(trained: Env, tmp_path: Path) -> None:
    """Given the same days on a fresh root, when two workers train the lineage, then every
    version's checkpoint has the sha256 of the one-worker run's (and so the same metrics)."""
    test_cache.clear()
    again = make_env(tmp_path / "again")
    assert train(again, workers=2) == [exitcodes.OK, exitcodes.OK]
    ours = [h.checkpoint.sha256 for h in again.queue.lineage("default") if h.checkpoint]
    theirs = [h.checkpoint.sha256 for h in trained.queue.lineage("default") if h.checkpoint]
    assert ours == theirs and len(ours) == len(trained.train_days)


def test_the_sgd_floor_still_trains(tmp_path: Path) -> None:
    env = make_env(tmp_path / "sgd")
    assert train(env, model=ModelConfig(kind="sgd")) == [exitcodes.OK]
    result = evaluate(env.storage, env.queue, "default")
    assert result["model"]["kind"] == "sgd" and result["metrics"]["roc_auc"] > 0.6

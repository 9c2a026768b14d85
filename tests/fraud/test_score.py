"""fraud.score: pinned versions, atomic predictions files, the same bytes on every re-run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batchml import exitcodes
from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.data.schema import to_frame
from batchml.fraud.features import pipeline
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import lineage
from batchml.fraud.models.model_base import fraud_scores
from batchml.fraud.tasks import prediction_path
from tests.support.cli import run_cli
from tests.support.fraud_env import Env, make_env, run_workers, train

TRAINED = 10


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A lineage trained on the first 10 days (v1 … v10), nothing scored yet."""
    env = make_env(tmp_path_factory.mktemp("score"))
    assert train(env, days=env.days[:TRAINED], test_days=[]) == [exitcodes.OK]
    return env


def score(env: Env, names: list[str], version: int, force: bool = False) -> list[int]:
    targets = [(name, datasets.day_path(name)) for name in names]
    env.queue.push(plan.scoring_items(targets, run="default", version=version), force=force)
    return run_workers(env, 2)


def predictions(env: Env, name: str, version: int = TRAINED) -> pd.DataFrame:
    return to_frame(
        pq.read_table(env.root / prediction_path(env.storage, "default", version, name))
    )


def test_scoring_writes_one_row_per_transaction_with_the_pinned_versions_scores(env: Env) -> None:
    days = env.days[20:22]
    assert score(env, days, TRAINED) == [exitcodes.OK, exitcodes.OK]
    head = env.queue.lineage("default")[-1]
    model, _ = lineage.load_version(env.storage, head, FeatureSpec().inputs)
    for day in days:
        out = predictions(env, day)
        assert list(out.columns) == ["TRANSACTION_ID", "SCORE", "MODEL_VERSION"]
        raw = datasets.read_parquet(env.storage, datasets.day_path(day))
        assert out["TRANSACTION_ID"].tolist() == raw["TRANSACTION_ID"].tolist()
        assert (out["MODEL_VERSION"] == TRAINED).all()
        table = pipeline.load_dataset_features(env.storage, datasets.day_path(day), FeatureSpec())
        X, _ = pipeline.xy(table, FeatureSpec())
        assert np.array_equal(out["SCORE"].to_numpy(), fraud_scores(model, X))
    record = json.loads((env.root / f"runs/default/records/score%3Adefault%3Av10%3A{days[0]}.json")
                        .read_text())  # fmt: skip
    result = record["result"]
    assert result["version"] == TRAINED and result["trained_through"] == env.days[TRAINED - 1]
    assert result["rows"] == len(predictions(env, days[0])) and result["model"] == "lgbm"


def test_scoring_again_gives_the_same_bytes(env: Env) -> None:
    day = env.days[23]
    assert score(env, [day], TRAINED) == [exitcodes.OK, exitcodes.OK]
    path = env.root / prediction_path(env.storage, "default", TRAINED, day)
    first = path.read_bytes()
    path.unlink()
    assert score(env, [day], TRAINED, force=True) == [exitcodes.OK, exitcodes.OK]
    assert path.read_bytes() == first
    assert not list((env.root / ".staging").rglob("*.parquet"))


def test_an_older_pinned_version_scores_with_its_own_model(env: Env) -> None:
    day = env.days[24]
    assert score(env, [day], 3) == [exitcodes.OK, exitcodes.OK]
    assert score(env, [day], TRAINED) == [exitcodes.OK, exitcodes.OK]
    old, new = predictions(env, day, 3), predictions(env, day, TRAINED)
    assert (old["MODEL_VERSION"] == 3).all() and (new["MODEL_VERSION"] == TRAINED).all()
    assert not np.array_equal(new["SCORE"], old["SCORE"])  # two files, one per version


def test_an_unknown_version_fails_with_a_clear_error(env: Env) -> None:
    """Runs after the other scoring runs: it leaves a dead item in the queue."""
    assert score(env, [env.days[25]], 99) == [exitcodes.DEAD_ITEMS] * 2
    item = env.queue.get(f"score:default:v99:{env.days[25]}")
    assert "run 'default' has no lineage version 99" in (item.last_error or "")


def test_the_cli_pins_the_head_at_push_time(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the CLI points logging at the captured output."""
    day = env.days[30]
    result = run_cli(capsys, "--root", str(env.root), "fraud", "score", day)
    assert result.code == 0, result.out + result.err
    assert f"queued 1 of 1 scoring item(s) with v{TRAINED}" in result.out
    item = env.queue.get(f"score:default:v{TRAINED}:{day}")
    assert item.payload["version"] == TRAINED and not item.depends_on
    again = run_cli(capsys, "--root", str(env.root), "fraud", "score", day)
    assert "queued 0 of 1" in again.out  # already queued: pushing twice is a no-op
    missing = run_cli(capsys, "--root", str(env.root), "fraud", "score", "2019-01-01")
    assert missing.code != 0 and "no stored dataset" in missing.out + missing.err

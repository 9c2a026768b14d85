"""The metrics computed once per version: equal to scikit-learn's and to the pandas rule of the
card precision, and the train metrics read from the replay memory's kept scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from batchml.fraud.evaluation import metrics
from batchml.fraud.evaluation.card_precision import CardRanking
from batchml.fraud.models.model import make_model
from batchml.fraud.models.model_base import CLASSES, fraud_scores
from tests.fraud.test_model import batches


def pandas_card_precision(
    days: Any, cards: Any, y: Any, scores: Any, k: int
) -> float | None:  # the previous implementation, kept as the reference
    frame = pd.DataFrame({"day": days, "card": cards, "y": y, "s": np.asarray(scores, float)})
    per_card = frame.groupby(["day", "card"], sort=True).max().reset_index()
    detected: set[Any] = set()
    precisions = []
    for _, day_cards in per_card.groupby("day", sort=True):
        candidates = day_cards[~day_cards["card"].isin(detected)]
        top = candidates.sort_values(["s", "card"], ascending=[False, True], kind="stable").head(k)
        precisions.append(float(top["y"].sum()) / k)
        detected.update(top.loc[top["y"] == 1, "card"].tolist())
    return float(np.mean(precisions)) if precisions else None


@pytest.mark.parametrize("weighted", [False, True])
def test_roc_auc_and_average_precision_equal_scikit_learns_exactly(weighted: bool) -> None:
    """Random labels and scores with many ties (rounded), with and without sample weights."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        y = (rng.random(n) < rng.random()).astype(int)
        s = np.round(rng.random(n), int(rng.integers(1, 4)))
        w = rng.choice([1.0, 10.0, 1 / 0.3], n) if weighted else None
        roc, ap = metrics.ranking_areas(y, s, w)
        assert roc == (roc_auc_score(y, s, sample_weight=w) if 0 < y.sum() < n else None)
        assert ap == (average_precision_score(y, s, sample_weight=w) if y.sum() else None)


def test_ranking_areas_of_a_large_tied_test_set_equal_scikit_learns_exactly() -> None:
    """Big enough for numpy's unstable sort to reorder ties (small ones are insertion-sorted)."""
    rng = np.random.default_rng(5)
    for decimals in (2, 3, 6):
        y = (rng.random(50_000) < 0.01).astype(int)
        s = np.round(rng.random(50_000) + 0.3 * y, decimals)
        assert metrics.ranking_areas(y, s) == (roc_auc_score(y, s), average_precision_score(y, s))


def test_card_precision_equals_the_pandas_rule_with_ties_and_repeat_cards() -> None:
    """Random days, cards seen on several days and several times a day, tied scores."""
    rng = np.random.default_rng(12)
    for _ in range(200):
        n = int(rng.integers(0, 400))
        days = np.datetime64("2018-04-01") + rng.integers(0, 6, n).astype("timedelta64[D]")
        cards = rng.integers(0, int(rng.integers(1, 60)), n)
        y = (rng.random(n) < 0.2).astype(int)
        s = np.round(rng.random(n), int(rng.integers(1, 3)))
        k = int(rng.integers(1, 25))
        expected = pandas_card_precision(days, cards, y, s, k)
        assert metrics.card_precision_at_k(days, cards, y, s, k) == expected


def test_one_ranking_scores_many_versions_as_a_fresh_one_does() -> None:
    rng = np.random.default_rng(13)
    days = np.datetime64("2018-04-01") + rng.integers(0, 7, 2000).astype("timedelta64[D]")
    cards, y = rng.integers(0, 300, 2000), (rng.random(2000) < 0.05).astype(int)
    ranking = CardRanking(days, cards, y)
    for _ in range(5):
        s = rng.random(2000)
        assert ranking.precision_at_k(s, 50) == pandas_card_precision(days, cards, y, s, 50)
    with pytest.raises(ValueError, match="10 scores for 2000 test rows"):
        ranking.precision_at_k(np.zeros(10), 50)


def test_train_metrics_come_from_the_kept_rows_weighted_by_their_sampling() -> None:
    """Given an lgbm model after a batch, its train metrics are those of the replay memory's
    rows of that batch scored by the model, each legitimate one weighing 1/legit_keep; rows
    and frauds are the whole batch's, and the estimate is close to the whole batch's figure."""
    model = make_model("lgbm", {"legit_keep": 0.25})
    data = batches(5, rows=4000)
    for X, y in data:
        model.partial_fit(X, y, classes=CLASSES)
    X, y = data[-1]
    result = metrics.train_metrics(model, X, y)
    replay = model.replay_
    newest = replay.batch == replay.batches_seen - 1
    kept_y = replay.y[newest]
    weight = np.where(kept_y == 1, 1.0, 4.0)
    scored = fraud_scores(model, replay.X[newest])
    direct = metrics.summary(kept_y, scored, weight)
    assert result["rows"] == len(y) and result["frauds"] == int(y.sum())
    assert result["sampled_rows"] == len(kept_y) < len(y)
    for key in ("accuracy", "roc_auc", "average_precision"):
        assert result[key] == pytest.approx(direct[key], abs=1e-9)
    whole = metrics.summary(y, fraud_scores(model, X))
    assert result["roc_auc"] == pytest.approx(whole["roc_auc"], abs=0.02)
    assert result["accuracy"] == pytest.approx(whole["accuracy"], abs=0.01)


def test_train_metrics_score_the_whole_batch_for_models_without_a_replay_memory() -> None:
    model = make_model("sgd")
    X, y = batches(1, rows=2000)[0]
    model.partial_fit(X, y, classes=CLASSES)
    assert metrics.train_metrics(model, X, y) == metrics.summary(y, fraud_scores(model, X))
    one_class = make_model("lgbm").partial_fit(X, np.zeros(len(X), int), classes=CLASSES)
    result = metrics.train_metrics(one_class, X, np.zeros(len(X), int))
    assert result["rows"] == len(X) and "sampled_rows" not in result  # its prior, everywhere

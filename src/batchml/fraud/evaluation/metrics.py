"""Fraud-detection metrics, measured the way the field measures them.

Accuracy alone is useless here: a model that never flags fraud scores ~99 % on data with <1 %
frauds. The threshold-free metrics are ROC AUC and average precision; the operational one is
card precision@k: each day investigators can check k cards, so of the k cards with the highest
risk (a card's risk being its highest transaction score that day), how many are compromised?
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import auc, average_precision_score, roc_auc_score

from batchml.fraud.evaluation.card_precision import CardRanking
from batchml.fraud.models.model_base import fraud_scores


def _both_classes(y: np.ndarray) -> bool:
    return bool(len(y)) and 0 < int(np.sum(y)) < len(y)


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present (undefined)."""
    return float(roc_auc_score(y, scores)) if _both_classes(y) else None


def average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve), None without positives."""
    return float(average_precision_score(y, scores)) if int(np.sum(y)) > 0 else None


def accuracy(y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float | None:
    return float(np.mean((scores >= threshold).astype(int) == y)) if len(y) else None


def card_precision_at_k(
    days: npt.ArrayLike, cards: npt.ArrayLike, y: npt.ArrayLike, scores: npt.ArrayLike,
    k: int = 100,
) -> float | None:  # fmt: skip
    """Mean over days of the share of compromised cards among the day's ``k`` riskiest cards.

    The Fraud Detection Handbook's ``card_precision_top_k``: a card's score on a day is the max
    over its transactions that day, and it is compromised that day if any of them is a fraud.
    Days are taken in order; cards found compromised among an earlier day's top ``k`` are
    removed from the later days (they would already be blocked). A day with fewer than ``k``
    cards still divides by ``k``. Equal scores are ranked by card id, so the result is
    deterministic. None when there is no row. (A test set scored many times keeps its
    :class:`~batchml.fraud.evaluation.card_precision.CardRanking`.)
    """
    return CardRanking(days, cards, y).precision_at_k(scores, k)


def ranking_areas(
    y: npt.ArrayLike, scores: npt.ArrayLike, weight: npt.ArrayLike | None = None
) -> tuple[float | None, float | None]:
    """ROC AUC and average precision from one sort of the scores (None where undefined).

    The arithmetic of scikit-learn's ``roc_auc_score`` and ``average_precision_score``
    (the thresholds, the dropped collinear ROC points, the trapezoids, the step sum), done
    once for both: tests/fraud/test_metrics.py checks the figures equal theirs."""
    labels = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(np.sum(labels == 1))
    both = 0 < positives < len(labels)
    if not positives:
        return None, None
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    if w is not None:
        nonzero = w != 0
        labels, s, w = labels[nonzero], s[nonzero], w[nonzero]
    n = len(s)
    # Descending. Only the counts at the end of each run of equal scores are used, and counts
    # of 0/1 labels are exact whatever the order inside a run: unweighted, the unstable sort (3×
    # faster on a test week) gives the very same floats. Weights summed in another order could
    # differ in the last bit: weighted, ties stay in row order.
    stable = w is not None
    order = n - 1 - np.argsort(s[::-1], kind="stable")[::-1] if stable else np.argsort(s)[::-1]
    ranked = (labels[order] == 1).astype(np.float64)
    ends = np.append(np.flatnonzero(np.diff(s[order])), n - 1)
    if w is None:
        tps = np.cumsum(ranked * 1.0)[ends]
        fps = 1 + ends.astype(np.float64) - tps
    else:
        tps = np.cumsum(ranked * w[order])[ends]
        fps = np.cumsum((1 - ranked) * w[order])[ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tps + fps != 0, np.divide(tps, tps + fps), 0.0)
    recall = tps / tps[-1]
    precision = np.append(precision[::-1], 1.0)
    recall = np.append(recall[::-1], 0.0)
    ap = float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))
    if not both:
        return None, ap
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.append(0.0, fps), np.append(0.0, tps)
    return float(auc(fps / fps[-1], tps / tps[-1])), ap


def summary(
    y: np.ndarray, scores: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float | int | None]:
    """The per-version metrics of the report; with ``weight``, each row counts that many
    times (a weighted sample of a larger set: the figures estimate the set's)."""
    y = np.asarray(y)
    roc, ap = ranking_areas(y, scores, weight)
    if weight is None:
        acc = accuracy(y, scores)
    else:
        w = np.asarray(weight, dtype=np.float64)
        right = (np.asarray(scores) >= 0.5).astype(int) == y
        acc = float(np.sum(w * right) / np.sum(w)) if len(y) else None
    return {
        "rows": len(y),
        "frauds": int(np.sum(y)),
        "accuracy": acc,
        "roc_auc": roc,
        "average_precision": ap,
    }


def train_metrics(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    """The metrics of a model on the batch it just learnt (a version's ``train`` metrics).

    A model whose replay memory keeps the batch's sampled rows with their scores
    (``last_batch_sample``: the ``lgbm`` kind) is measured on those, each weighed by its
    inverse sampling probability: every fraud and ~``legit_keep`` of the legitimate rows,
    with no scoring of the whole batch by every tree (``sampled_rows`` says how many). Other
    models score the whole batch. ``rows`` and ``frauds`` are the whole batch's."""
    y = np.asarray(y)
    sample = getattr(model, "last_batch_sample", None)
    kept = sample() if callable(sample) else None
    if kept is None:
        return summary(y, fraud_scores(model, X))
    labels, scores, weight = kept
    result = summary(labels, scores, weight)
    result.update(rows=len(y), frauds=int(np.sum(y)), sampled_rows=len(labels))
    return result

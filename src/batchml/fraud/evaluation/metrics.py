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
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


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
    deterministic. None when there is no row.
    """
    frame = pd.DataFrame(
        {
            "day": np.asarray(days),
            "card": np.asarray(cards),
            "y": np.asarray(y),
            "s": np.asarray(scores, dtype=np.float64),
        }
    )
    per_card = frame.groupby(["day", "card"], sort=True).max().reset_index()
    detected: set[Any] = set()
    precisions = []
    for _, day_cards in per_card.groupby("day", sort=True):
        candidates = day_cards[~day_cards["card"].isin(detected)]
        top = candidates.sort_values(["s", "card"], ascending=[False, True], kind="stable").head(k)
        precisions.append(float(top["y"].sum()) / k)
        detected.update(top.loc[top["y"] == 1, "card"].tolist())
    return float(np.mean(precisions)) if precisions else None


def summary(y: np.ndarray, scores: np.ndarray) -> dict[str, float | int | None]:
    """The per-version metrics of the report."""
    y = np.asarray(y)
    return {
        "rows": len(y),
        "frauds": int(np.sum(y)),
        "accuracy": accuracy(y, scores),
        "roc_auc": roc_auc(y, scores),
        "average_precision": average_precision(y, scores),
    }

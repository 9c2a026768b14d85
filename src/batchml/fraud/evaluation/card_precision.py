"""Card precision@k of many score vectors on one test set: the grouping is done once.

The rule is :func:`batchml.fraud.evaluation.metrics.card_precision_at_k`'s (the Fraud Detection
Handbook's ``card_precision_top_k``). Every version of a lineage is assessed on the same test
rows, so the rows' (day, card) groups, each group's label and the days' spans are computed
once per test set; a score vector then costs one maximum per group and one sort per day.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class CardRanking:
    """The (day, card) groups of a test set's rows, sorted by day then card."""

    def __init__(self, days: npt.ArrayLike, cards: npt.ArrayLike, y: npt.ArrayLike) -> None:
        day, card, label = np.asarray(days), np.asarray(cards), np.asarray(y)
        if not len(day) == len(card) == len(label):
            raise ValueError(
                f"days, cards and y differ in length: {len(day)}, {len(card)}, {len(label)}"
            )
        self.rows = len(day)
        self.order = np.lexsort((card, day))  # by day, then card (stable)
        day, card, label = day[self.order], card[self.order], label[self.order]
        new = np.ones(len(day), dtype=bool)
        new[1:] = (day[1:] != day[:-1]) | (card[1:] != card[:-1])
        self.starts = np.flatnonzero(new)
        self.card = card[self.starts]
        self.y = np.maximum.reduceat(label, self.starts) if len(label) else label
        self.card_code = np.unique(self.card, return_inverse=True)[1].reshape(-1)
        group_day = day[self.starts]
        first = np.ones(len(group_day), dtype=bool)
        first[1:] = group_day[1:] != group_day[:-1]
        bounds = np.append(np.flatnonzero(first), len(group_day))
        self.day_spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def precision_at_k(self, scores: npt.ArrayLike, k: int) -> float | None:
        """Mean over days of the share of compromised cards among the day's ``k`` riskiest,
        cards found earlier left out; None when there is no row."""
        s = np.asarray(scores, dtype=np.float64)
        if len(s) != self.rows:
            raise ValueError(f"{len(s)} scores for {self.rows} test rows")
        if not self.rows:
            return None
        risk = np.fmax.reduceat(s[self.order], self.starts)  # a group's max, NaN skipped
        detected = np.zeros(int(self.card_code.max()) + 1, dtype=bool)
        precisions = []
        for lo, hi in self.day_spans:
            groups = np.arange(lo, hi)[~detected[self.card_code[lo:hi]]]
            top = groups[np.lexsort((self.card[groups], -risk[groups]))[:k]]
            hits = self.y[top] == 1
            precisions.append(float(self.y[top].sum()) / k)
            detected[self.card_code[top[hits]]] = True
        return float(np.mean(precisions))

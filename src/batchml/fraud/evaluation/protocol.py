"""The Fraud Detection Handbook's test protocol: which days, which transactions, which metrics.

Labels arrive late: a transaction's fraud label is known ``delay`` days after it happened. A
model trained through day L has used labels up to day L, which are all known on day
``L + delay``; so it is tested on the ``test_days`` days that start at ``L + delay + 1``.

Known compromised cards. On test day T the labels of days up to ``T - delay - 1`` are known,
and a card with a known fraud is blocked: finding it again is no achievement, so its
transactions leave the test set. As in the handbook (``get_train_test_set``), the frauds that
count are those of the ``known_days`` days before the delay period (its training week) and of
the delay period up to ``T - delay - 1``: a card compromised long before has been replaced
by then. ``known_days=0`` counts every stored day instead (a much stricter test: over four
months most simulated customers meet a compromised terminal once; see docs/fraud.md).

Metrics on what is left: ROC AUC, average precision, accuracy, and card precision@k (see
:func:`batchml.fraud.evaluation.metrics.card_precision_at_k`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from batchml.fraud.data import datasets
from batchml.fraud.evaluation import metrics
from batchml.fraud.evaluation.card_precision import CardRanking
from batchml.fraud.features import pipeline
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.storage import Storage

DayArray = npt.NDArray[np.datetime64]


def shift(day: str, days: int) -> str:
    """The day ``days`` calendar days after ``day`` (before, if negative)."""
    return (datasets.parse_day(day) + timedelta(days=days)).isoformat()


@dataclass(frozen=True)
class Protocol:
    """The test period and the rules of the test (defaults: the handbook's)."""

    test_start: str | None = None  # default: last trained day + delay + 1
    test_days: int = 7
    delay: int = 7
    top_k: int = 100
    known_days: int = 7  # 0: frauds of every stored day mark a card as known

    def period(self, trained_through: str) -> list[str]:
        """The test days of a model trained through ``trained_through``."""
        start = self.test_start or shift(trained_through, self.delay + 1)
        return [shift(start, i) for i in range(self.test_days)]

    def known_since(self, first_test_day: str) -> str | None:
        """First day whose frauds mark a card as known compromised (None: every stored day)."""
        if self.known_days <= 0:
            return None
        return shift(first_test_day, -(self.delay + self.known_days))

    def to_json(self) -> dict[str, Any]:
        return {
            "test_days": self.test_days,
            "delay": self.delay,
            "top_k": self.top_k,
            "known_days": self.known_days,
        }


def version_protocol(spec: FeatureSpec) -> Protocol:
    """The protocol of every lineage version's ``test`` metrics: the handbook's defaults, with
    the label delay the features assume (the terminal risk windows end that many days back)."""
    return Protocol(delay=spec.delay_days)


def day_numbers(times: pd.Series) -> DayArray:
    """The calendar day of each timestamp, as ``datetime64[D]``."""
    return times.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")


def keep_mask(
    row_day: DayArray, row_card: np.ndarray, fraud_day: DayArray, fraud_card: np.ndarray,
    delay: int,
) -> npt.NDArray[np.bool_]:  # fmt: skip
    """True for the rows whose card has no known fraud on their day.

    ``fraud_day``/``fraud_card`` are the frauds of the known window (from its first day on);
    a row of day T is dropped when its card has one of them on a day up to ``T - delay - 1``.
    The window's start is fixed, so only each card's earliest fraud matters.
    """
    if not len(fraud_card):
        return np.ones(len(row_card), dtype=bool)
    first = pd.Series(fraud_day).groupby(np.asarray(fraud_card)).min()
    earliest = pd.Series(row_card).map(first).to_numpy(dtype="datetime64[D]")
    known = ~np.isnat(earliest) & (earliest <= row_day - np.timedelta64(delay + 1, "D"))
    return np.asarray(~known)


@dataclass(frozen=True)
class TestSet:
    """The test rows left once known-compromised cards are removed, ready to score."""

    X: np.ndarray
    y: np.ndarray
    day: DayArray
    card: np.ndarray
    days: tuple[str, ...]
    excluded: int

    @cached_property
    def ranking(self) -> CardRanking:
        """The rows' (day, card) groups, built once for every version scored on this set."""
        return CardRanking(self.day, self.card, self.y)

    def metrics(self, scores: np.ndarray, top_k: int) -> dict[str, Any]:
        """ROC AUC, average precision, accuracy and card precision@k of ``scores``."""
        result: dict[str, Any] = dict(metrics.summary(self.y, scores))
        result["card_precision_at_k"] = self.ranking.precision_at_k(scores, top_k)
        result["top_k"] = top_k
        result["excluded_known_compromised"] = self.excluded
        return result


def build_test_set(
    table: pd.DataFrame, frauds: pd.DataFrame, spec: FeatureSpec, delay: int
) -> TestSet:
    """A feature table's test set, given the known window's frauds (TX_DATETIME, CUSTOMER_ID)."""
    row_day = day_numbers(table["TX_DATETIME"])
    card = table["CUSTOMER_ID"].to_numpy()
    keep = keep_mask(
        row_day, card, day_numbers(frauds["TX_DATETIME"]), frauds["CUSTOMER_ID"].to_numpy(),
        delay,
    )  # fmt: skip
    X, y = pipeline.xy(table, spec)
    days = tuple(str(d) for d in np.unique(row_day))
    return TestSet(X[keep], y[keep], row_day[keep], card[keep], days, int((~keep).sum()))


def known_fraud_days(protocol: Protocol, test_days: Sequence[str]) -> tuple[str | None, str]:
    """First and last day whose frauds can mark a card as known during ``test_days``."""
    first_test, last_test = min(test_days), max(test_days)
    return protocol.known_since(first_test), shift(last_test, -(protocol.delay + 1))


def load_frauds(storage: Storage, first: str | None, last: str) -> pd.DataFrame:
    """TX_DATETIME and CUSTOMER_ID of the frauds on the stored training days first … last."""
    days = datasets.training_days(storage, "*", first, last)
    raw = datasets.load_days(storage, days)
    return raw.loc[raw["TX_FRAUD"] == 1, ["TX_DATETIME", "CUSTOMER_ID"]]


def load_test_set(
    storage: Storage, relpaths: Sequence[str], spec: FeatureSpec, protocol: Protocol
) -> TestSet:
    """The test set of stored datasets, known-compromised cards removed per the protocol."""
    table = pipeline.load_many(storage, list(relpaths), spec)
    days = [str(d) for d in np.unique(day_numbers(table["TX_DATETIME"]))]
    first, last = known_fraud_days(protocol, days)
    return build_test_set(table, load_frauds(storage, first, last), spec, protocol.delay)

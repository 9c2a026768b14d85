"""Candidate columns measured by the ablation of ``bench/model_selection.py``, in no feature set.

Each is a direction of issue 15 that the ablation tries on the validation weeks; none is an
input of a :class:`~batchml.fraud.features.pipeline.FeatureSpec` (docs/fraud.md gives their
figures). For a transaction at time ``t``, with the delay ``d`` (7 days) of the labels:

``CARD_TERMINAL_NB_TX_30DAY``
    How many *earlier* transactions (before the current row in the customer windows' tie order
    of :mod:`batchml.fraud.features.engineered`) the card made at this terminal in
    ``(t - 30 days, t)``: 0 for a terminal the card has not used in a month.
``CUSTOMER_ID_NB_KNOWN_RISKY_TERMINALS_14DAY``
    How many of the card's earlier transactions in ``(t - 14 days, t)`` were made at a terminal
    with a known fraud at their own time ``s``: a fraud in ``(s - (d + 14) days, s - d days]``
    (labels at least ``d`` days old at ``s``, so at ``t``).
``CUSTOMER_ID_MAX_AMOUNT_RATIO_TODAY``
    The largest ``TX_AMOUNT`` / (mean of the card's earlier amounts over 14 days) among the
    card's transactions of the current calendar day *up to and including this one* (the ratio
    is 1 without earlier amounts or with a zero mean): no later row of the day is used.

All use rows of the 35-day look-back only (within the 37 days of the feature sets), the
windows of :mod:`batchml.fraud.features.engineered` (one ``searchsorted`` per window edge),
integer counts or exact sums: a day's values are the same whether it is computed alone or in a
block. No value is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from batchml.fraud.features.behaviour import range_sums
from batchml.fraud.features.engineered import (
    _NS_PER_DAY,
    DEFAULT_DELAY_DAYS,
    FloatArray,
    Int64Array,
    _Columns,
    _ExactSums,
    _Groups,
    _Timeline,
)

PAIR_DAYS = 30
RISKY_DAYS = 14
RATIO_DAYS = 14

CANDIDATE_COLUMNS: tuple[str, ...] = (
    f"CARD_TERMINAL_NB_TX_{PAIR_DAYS}DAY",
    f"CUSTOMER_ID_NB_KNOWN_RISKY_TERMINALS_{RISKY_DAYS}DAY",
    "CUSTOMER_ID_MAX_AMOUNT_RATIO_TODAY",
)


def candidate_arrays(
    columns: Mapping[str, npt.NDArray[Any]], *, delay_days: int = DEFAULT_DELAY_DAYS
) -> dict[str, FloatArray]:
    """The candidate columns of every row (arrays as ``feature_arrays`` takes them), float64."""
    data = _Columns.from_arrays(columns)
    out = np.zeros((len(CANDIDATE_COLUMNS), len(data.times)))
    if len(data.times):
        timeline = _Timeline.build(data)
        _pair_counts(data, timeline, out[0])
        _risky_terminals(data, timeline, int(delay_days), out[1])
        _max_ratio_today(data, timeline, out[2])
    return {name: out[i] for i, name in enumerate(CANDIDATE_COLUMNS)}


def _earlier_counts(groups: _Groups, days: int) -> Int64Array:
    here = np.arange(len(groups.order), dtype=np.int64)
    return here - groups.window_starts(days)


def _pair_counts(columns: _Columns, timeline: _Timeline, out: FloatArray) -> None:
    cards = pd.factorize(columns.customers)[0].astype(np.int64)
    terminals = pd.factorize(columns.terminals)[0].astype(np.int64)
    pairs = cards * (int(terminals.max()) + 1) + terminals
    groups = _Groups.build(pairs, timeline, 0)
    groups.scatter(_earlier_counts(groups, PAIR_DAYS).astype(np.float64), out)


def _risky_terminals(columns: _Columns, timeline: _Timeline, delay: int, out: FloatArray) -> None:
    terminals = _Groups.build(columns.terminals, timeline, 0)
    prefix = np.concatenate(([0], np.cumsum(columns.frauds[terminals.order])))
    known = (
        prefix[terminals.window_starts(delay)] - prefix[terminals.window_starts(delay + RISKY_DAYS)]
    )
    risky = np.empty(len(known), dtype=np.int64)
    risky[terminals.order] = known > 0  # per input row
    cards = _Groups.build(columns.customers, timeline, 0)
    sums = np.concatenate(([0], np.cumsum(risky[cards.order])))
    here = np.arange(len(cards.order), dtype=np.int64)
    groups_counts = sums[here] - sums[cards.window_starts(RISKY_DAYS)]
    cards.scatter(groups_counts.astype(np.float64), out)


def _max_ratio_today(columns: _Columns, timeline: _Timeline, out: FloatArray) -> None:
    groups = _Groups.build(columns.customers, timeline, 0)
    amounts = columns.amounts[groups.order]
    here = np.arange(len(amounts), dtype=np.int64)
    starts = groups.window_starts(RATIO_DAYS)
    count = (here - starts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = range_sums(_ExactSums.of(amounts), starts, here) / count
        ratio = np.where((count > 0) & (mean != 0), amounts / mean, 1.0)
    day = columns.times[groups.order] // _NS_PER_DAY
    segment = np.cumsum(
        np.r_[True, (groups.bases[1:] != groups.bases[:-1]) | (day[1:] != day[:-1])]
    )
    running = ratio.copy()
    step = 1
    while step < len(running):  # prefix maxima inside segments, by doubling
        same = segment[step:] == segment[:-step]
        if not same.any():
            break
        shifted = np.where(same, running[:-step], -np.inf)
        np.maximum(running[step:], shifted, out=running[step:])
        step *= 2
    groups.scatter(running, out)

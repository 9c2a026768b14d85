"""Features beyond the handbook's: a card's amounts against its habits, a terminal's frauds.

The handbook's 15 inputs describe a card by its count and mean amount over 1, 7 and 30 days, and
a terminal by its share of frauds over windows that end ``delay`` days back. A tree model cannot
divide one input by another, and a terminal's share over a window says nothing of when its
frauds started or stopped. These columns add both (``feature set "behaviour"`` of
:class:`batchml.fraud.features.pipeline.FeatureSpec`), for each transaction at time ``t``:

``CUSTOMER_ID_AMOUNT_RATIO_{n}DAY`` (n = 7, 14, 30)
    ``TX_AMOUNT`` divided by the mean amount of the card's *earlier* transactions in
    ``(t - n days, t)`` (earlier: before the current row in the customer windows' tie order of
    :mod:`batchml.fraud.features.engineered`); 1 without one, or when that mean is 0.
``CUSTOMER_ID_AMOUNT_ZSCORE_{n}DAY`` (n = 7, 14, 30)
    ``(TX_AMOUNT - mean) / std`` over the same earlier transactions (population std); 0 with
    fewer than two of them or a std below 1e-6 of the mean (equal amounts: the std is then the
    rounding noise of ``E[x²] - mean²``).
``CUSTOMER_ID_AMOUNT_RATIO_OLD``
    ``TX_AMOUNT`` divided by the card's mean amount over ``(t - 37 days, t - 14 days]``: habits
    from before any compromise that could still be going on (a compromised card spends large
    amounts for up to 14 days, which the recent means soak up); 1 without one or a zero mean.
``TERMINAL_ID_RISK_{n}DAY_WINDOW`` (n = 2, 3, 14)
    The handbook's terminal risk (fraud share over ``(t - (d + n) days, t - d days]``, 0 when
    empty) for finer windows.
``TERMINAL_ID_NB_KNOWN_FRAUD_30DAY``
    The terminal's frauds in the known window ``(t - (d + 30) days, t - d days]``.
``TERMINAL_ID_DAYS_SINCE_LAST_KNOWN_FRAUD``, ``TERMINAL_ID_DAYS_SINCE_FIRST_KNOWN_FRAUD``
    ``(t - d days) - s`` in days, for ``s`` the time of the terminal's latest / earliest fraud
    in that known window: how recent, and how long-running, its known compromise is; 30 (the
    window's length) when it holds none.
``TERMINAL_ID_LAST_KNOWN_FRAUD``
    The label of the terminal's latest transaction in the known window (0 when it is empty):
    whether the compromise was still going on when last seen.

No value is missing (NaN): every model kind takes them, including those that refuse NaN.

Only labels at least ``d`` (the delay, 7) days old are used, as by the handbook's risk. Every
value depends only on the rows of the transaction's 37-day look-back (``d + 30``), with the
method of :mod:`batchml.fraud.features.engineered` (one ``searchsorted`` per window edge, exact
window sums of amounts and of their squares): a day's values are bit-identical whether it is
computed alone with its look-back or within any block of days.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from batchml.errors import DatasetError
from batchml.fraud.features.engineered import (
    _NS_PER_DAY,
    DEFAULT_DELAY_DAYS,
    REQUIRED_COLUMNS,
    FloatArray,
    Int64Array,
    _Columns,
    _ExactSums,
    _Groups,
    _Timeline,
)

#: Windows (days) of the card's amount ratios and z-scores.
AMOUNT_WINDOWS = (7, 14, 30)
#: The card's older habits: ``(t - OLD_FROM days, t - OLD_TO days]``.
OLD_FROM, OLD_TO = 37, 14
#: The finer terminal risk windows (days), and the known window of the fraud history (days).
RISK_WINDOWS = (2, 3, 14)
KNOWN_DAYS = 30

#: The columns, in output order.
BEHAVIOUR_COLUMNS: tuple[str, ...] = (
    *(f"CUSTOMER_ID_AMOUNT_RATIO_{n}DAY" for n in AMOUNT_WINDOWS),
    *(f"CUSTOMER_ID_AMOUNT_ZSCORE_{n}DAY" for n in AMOUNT_WINDOWS),
    "CUSTOMER_ID_AMOUNT_RATIO_OLD",
    *(f"TERMINAL_ID_RISK_{n}DAY_WINDOW" for n in RISK_WINDOWS),
    f"TERMINAL_ID_NB_KNOWN_FRAUD_{KNOWN_DAYS}DAY",
    "TERMINAL_ID_DAYS_SINCE_LAST_KNOWN_FRAUD",
    "TERMINAL_ID_DAYS_SINCE_FIRST_KNOWN_FRAUD",
    "TERMINAL_ID_LAST_KNOWN_FRAUD",
)
_CUSTOMER_COLUMNS = 2 * len(AMOUNT_WINDOWS) + 1
#: A std below this share of the mean is rounding noise of ``E[x²] - mean²`` (equal amounts).
_RELATIVE_NOISE = 1e-6


def behaviour_history_days(delay_days: int = DEFAULT_DELAY_DAYS) -> int:
    """Days of raw transactions before day D that day D's behaviour columns need (37)."""
    return max(OLD_FROM, delay_days + KNOWN_DAYS, delay_days + max(RISK_WINDOWS))


def compute_behaviour(tx: pd.DataFrame, *, delay_days: int = DEFAULT_DELAY_DAYS) -> pd.DataFrame:
    """The behaviour columns of every row of ``tx`` (float64), in its order and with its index.

    ``tx`` is in the canonical schema, as for
    :func:`batchml.fraud.features.engineered.compute_features`.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in tx.columns]
    if missing:
        raise DatasetError(
            f"cannot compute features: missing column(s) {', '.join(missing)}; "
            "normalize the dataset with batchml.fraud.data.schema.normalize first"
        )
    values = _values({c: tx[c].to_numpy() for c in REQUIRED_COLUMNS}, delay_days)
    return pd.DataFrame(values.T, columns=list(BEHAVIOUR_COLUMNS), index=tx.index, copy=False)


def behaviour_arrays(
    columns: Mapping[str, npt.NDArray[Any]],
    *,
    delay_days: int = DEFAULT_DELAY_DAYS,
    first_row: int = 0,
) -> dict[str, FloatArray]:
    """:func:`compute_behaviour` on plain arrays (as
    :func:`~batchml.fraud.features.engineered.feature_arrays` takes them), of the rows from
    ``first_row`` on: one array per :data:`BEHAVIOUR_COLUMNS`, the same values."""
    values = _values(columns, delay_days)
    return {name: values[i, first_row:] for i, name in enumerate(BEHAVIOUR_COLUMNS)}


def _values(columns: Mapping[str, npt.NDArray[Any]], delay_days: int) -> FloatArray:
    data = _Columns.from_arrays(columns)
    values = np.empty((len(BEHAVIOUR_COLUMNS), len(data.times)))
    if len(data.times):
        timeline = _Timeline.build(data)
        _card_amounts(data, timeline, values[:_CUSTOMER_COLUMNS])
        _terminal_history(data, timeline, int(delay_days), values[_CUSTOMER_COLUMNS:])
    return values


def _card_amounts(columns: _Columns, timeline: _Timeline, out: FloatArray) -> None:
    """Ratios and z-scores of the amount against the card's earlier amounts."""
    groups = _Groups.build(columns.customers, timeline, 0)
    amounts = columns.amounts[groups.order]
    sums = _ExactSums.of(amounts)
    squares = _ExactSums.of(amounts * amounts)
    here = np.arange(len(amounts), dtype=np.int64)  # earlier rows: [start, here)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, n in enumerate(AMOUNT_WINDOWS):
            starts = groups.window_starts(n)
            count = (here - starts).astype(np.float64)
            mean = range_sums(sums, starts, here) / count
            variance = range_sums(squares, starts, here) / count - mean * mean
            std = np.sqrt(np.maximum(variance, 0.0))
            ratio = np.where((count > 0) & (mean != 0), amounts / mean, 1.0)
            spread = (count > 1) & (std > _RELATIVE_NOISE * np.abs(mean))
            zscore = np.where(spread, (amounts - mean) / std, 0.0)
            groups.scatter(ratio, out[i])
            groups.scatter(zscore, out[len(AMOUNT_WINDOWS) + i])
        starts, stops = groups.window_starts(OLD_FROM), groups.window_starts(OLD_TO)
        mean = range_sums(sums, starts, stops) / (stops - starts)
        ratio = np.where((stops > starts) & (mean != 0), amounts / mean, 1.0)
        groups.scatter(ratio, out[2 * len(AMOUNT_WINDOWS)])


def _terminal_history(columns: _Columns, timeline: _Timeline, delay: int, out: FloatArray) -> None:
    """Finer risks, and the terminal's frauds in its known window ``(t-(d+30), t-d]``."""
    groups = _Groups.build(columns.terminals, timeline, 0)
    frauds = columns.frauds[groups.order]
    times = columns.times[groups.order]
    size = len(frauds)
    prefix = np.concatenate(([0], np.cumsum(frauds)))
    stops = groups.window_starts(delay)
    for i, n in enumerate(RISK_WINDOWS):  # the handbook's risk (engineered._terminal_features)
        starts = groups.window_starts(delay + n)
        counts = (stops - starts).astype(np.float64)
        known = (prefix[stops] - prefix[starts]).astype(np.float64)
        groups.scatter(np.divide(known, counts, out=np.zeros(size), where=counts > 0), out[i])
    out = out[len(RISK_WINDOWS) :]
    starts = groups.window_starts(delay + KNOWN_DAYS)
    nonempty = stops > starts
    position = np.arange(size, dtype=np.int64)
    latest = np.maximum.accumulate(np.where(frauds == 1, position, -1))  # last fraud ≤ k
    following = np.minimum.accumulate(np.where(frauds == 1, position, size)[::-1])[::-1]
    following = np.concatenate((following, [size]))  # first fraud ≥ k
    last_row = np.maximum(stops - 1, 0)
    last_fraud = np.where(nonempty, latest[last_row], -1)
    first_fraud = following[starts]
    has_last = last_fraud >= starts
    has_first = first_fraud < stops
    known_end = times - delay * _NS_PER_DAY
    nb = (prefix[stops] - prefix[starts]).astype(np.float64)
    since_last = (known_end - times[np.maximum(last_fraud, 0)]) / _NS_PER_DAY
    since_first = (known_end - times[np.minimum(first_fraud, size - 1)]) / _NS_PER_DAY
    last_label = frauds[last_row].astype(np.float64)
    groups.scatter(nb, out[0])
    groups.scatter(np.where(has_last, since_last, float(KNOWN_DAYS)), out[1])
    groups.scatter(np.where(has_first, since_first, float(KNOWN_DAYS)), out[2])
    groups.scatter(np.where(nonempty, last_label, 0.0), out[3])


def range_sums(sums: _ExactSums, starts: Int64Array, stops: Int64Array) -> FloatArray:
    """Per position, the exact sum of the values at positions ``starts`` … ``stops - 1``,
    rounded by the fixed procedure of ``_ExactSums`` (0 for an empty range)."""
    return sums.between(starts, stops, every=False)

"""The engineered fraud features of the Fraud Detection Handbook's baseline.

Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection*, chapter
"Baseline feature transformation": 14 features which, with ``TX_AMOUNT``, are the 15 inputs
of the handbook's baseline models. For each transaction at time ``t`` (nanoseconds):

``TX_DURING_WEEKEND``, ``TX_DURING_NIGHT``
    1 if the weekday is Saturday or Sunday; 1 if the hour is 0 to 6 (inclusive), else 0.

``CUSTOMER_ID_NB_TX_{n}DAY_WINDOW``, ``CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW``
    Count and mean of ``TX_AMOUNT`` over the customer's transactions in the window
    ``(t - n days, t]``: a transaction exactly ``n`` days earlier is out, one 1 ns later is in,
    and the current transaction is always in, so the count is at least 1.

``TERMINAL_ID_NB_TX_{n}DAY_WINDOW``, ``TERMINAL_ID_RISK_{n}DAY_WINDOW``
    Count of the terminal's transactions, and the share of them with ``TX_FRAUD == 1``, in the
    window ``(t - (d + n) days, t - d days]`` shifted back by the delay ``d`` (7 days), because
    fraud labels are only known after an investigation. The risk is 0 when that window is empty.

These are exactly the values of the handbook's pandas code, ``rolling(f"{n}D")`` on each
entity's ``TX_DATETIME``-indexed series: the terminal columns are its differences
``rolling(f"{d + n}D") - rolling(f"{d}D")`` of the fraud count and sum.

Equal timestamps. Like pandas rolling, which windows over the rows in their order, ties
follow the input's row order: rows are ordered by ``TX_DATETIME`` and, at equal timestamps, by
their position in ``tx`` (a stable sort). A customer window holds, among the rows at the current
timestamp, only the current row and those before it in the input. The terminal windows end
``d`` days back, so they do not depend on this order. Concatenating days in date order keeps the
order of every tie (equal timestamps fall on one day), so a day's features are the same whether
it is computed alone (with its history) or together with other days.

Method. Rows are sorted once (stably) by time, then (stably) by entity, giving the order
``(entity, TX_DATETIME, input position)``. Every window edge of every group is then one
``np.searchsorted`` per window size over the non-decreasing int64 key ``group * M + time``,
where time is ``(t - t0) / unit`` (``unit``: the largest divisor of a day dividing every
``t - t0``, one second for data stamped to the second) or, when that key would overflow int64,
the rank of ``t`` among the distinct timestamps: window edges stay exact to the nanosecond.
Counts are differences of positions, sums differences of per-row (exact) prefix sums.

Precision and determinism. Window sums of ``TX_AMOUNT`` are exact: each absolute amount is
cut into 32-bit integer limbs on a fixed binary grid (bits below 2**-96 are dropped, a change
below 1.3e-29 per amount), whose int64 prefix sums are exact, and a window's limb sums, carried
into canonical digits, are turned into one float by a fixed procedure (positive and negative
amounts apart). A window's mean is therefore correct to about one rounding and depends only on
the rows in that window, never on the other rows of the input: the same transaction gets
bit-identical features from any input that holds its look-back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from batchml.errors import ConfigError, DatasetError

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEFAULT_WINDOWS: tuple[int, ...] = (1, 7, 30)
DEFAULT_DELAY_DAYS = 7

REQUIRED_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_FRAUD",
)

_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_DAY = 24 * _NS_PER_HOUR
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0
_LAST_NIGHT_HOUR = 6
_FIRST_WEEKEND_DAY = 5


def feature_columns(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[str, ...]:
    """The feature column names, in output order, for the given window sizes (days)."""
    customer = [
        name
        for n in windows
        for name in (f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW")
    ]
    terminal = [
        name
        for n in windows
        for name in (f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW", f"TERMINAL_ID_RISK_{n}DAY_WINDOW")
    ]
    return ("TX_DURING_WEEKEND", "TX_DURING_NIGHT", *customer, *terminal)


#: The 14 features for the default windows (1, 7, 30), in output order.
FEATURE_COLUMNS: tuple[str, ...] = feature_columns()


def history_days_needed(
    windows: Sequence[int] = DEFAULT_WINDOWS, delay_days: int = DEFAULT_DELAY_DAYS
) -> int:
    """Days of raw transactions before day D needed to compute day D's features exactly.

    The widest window of a transaction at time ``t`` on day D is the terminal's
    ``(t - (delay + max(windows)) days, t]``, which starts no earlier than midnight of day
    ``D - (delay + max(windows))``. Computing features on those days plus day D, and keeping
    day D's rows, gives the same values as computing them on the whole history. 37 for the
    defaults.
    """
    checked, delay = _check_parameters(windows, delay_days)
    return delay + max(checked)


def compute_features(
    tx: pd.DataFrame,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
) -> pd.DataFrame:
    """The baseline features of every transaction in ``tx`` (see the module docstring).

    ``tx`` holds raw transactions in the canonical schema, in any row order. Returns one row
    per input row, in the input's order and with its index (so ``pd.concat(axis=1)`` lines
    up): ``TRANSACTION_ID`` then :func:`feature_columns` ``(windows)``. The two flags are int64;
    counts, means and risks are float64, as in the handbook's pandas code.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in tx.columns]
    if missing:
        raise DatasetError(
            f"cannot compute features: missing column(s) {', '.join(missing)}; "
            "normalize the dataset with batchml.fraud.data.schema.normalize first"
        )
    arrays = {
        "TRANSACTION_ID": tx["TRANSACTION_ID"].to_numpy(dtype=np.int64),
        "TX_DATETIME": tx["TX_DATETIME"].to_numpy(dtype="datetime64[ns]"),
        **{c: tx[c].to_numpy(dtype=np.int64) for c in ("CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD")},
        "TX_AMOUNT": tx["TX_AMOUNT"].to_numpy(dtype=np.float64),
    }
    names, weekend, night, values = _features(arrays, windows, delay_days, 0)
    flags = pd.DataFrame(
        {"TRANSACTION_ID": arrays["TRANSACTION_ID"], names[0]: weekend, names[1]: night},
        index=tx.index,
    )
    windowed = pd.DataFrame(values.T, columns=list(names[2:]), index=tx.index, copy=False)
    return pd.concat([flags, windowed], axis=1)


def feature_arrays(
    columns: Mapping[str, npt.NDArray[Any]],
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
    first_row: int = 0,
) -> dict[str, npt.NDArray[Any]]:
    """:func:`compute_features` on plain arrays: the :data:`REQUIRED_COLUMNS` (``TX_DATETIME``
    as datetime64[ns], the others int64, ``TX_AMOUNT`` float64) in, one array per
    :func:`feature_columns` ``(windows)`` out, in that order and in the input's row order.
    The same values as :func:`compute_features`, without a DataFrame on either side (the
    feature tables are built from these arrays with no copy).

    With ``first_row``, only the rows from that position on get features (the arrays are
    ``first_row`` shorter): the rows before it are only the look-back of the others' windows.
    Their values are the same as with ``first_row=0``; the windows of the rows left out are
    never computed, which saves their time and memory."""
    names, weekend, night, values = _features(columns, windows, delay_days, first_row)
    return {names[0]: weekend, names[1]: night, **dict(zip(names[2:], values, strict=True))}


def _features(
    columns: Mapping[str, npt.NDArray[Any]], windows: Sequence[int], delay_days: int, first: int
) -> tuple[tuple[str, ...], Int64Array, Int64Array, FloatArray]:
    """Names, the two flags, and the float features as one row each of a 2-D array, of the
    rows from position ``first`` on."""
    checked, delay = _check_parameters(windows, delay_days)
    data = _Columns.from_arrays(columns)
    if not 0 <= first <= len(data.times):
        raise ConfigError(f"first_row must be within 0 … {len(data.times)}, got {first}")
    names = feature_columns(checked)
    values = np.empty((len(names) - 2, len(data.times) - first))  # one row per float column
    if len(data.times) > first:
        timeline = _Timeline.build(data)
        half = 2 * len(checked)
        _customer_features(data, timeline, checked, first, values[:half])
        _terminal_features(data, timeline, checked, delay, first, values[half:])
    weekend, night = _time_flags(data.times[first:])
    return names, weekend, night, values


def _check_parameters(windows: Sequence[int], delay_days: int) -> tuple[tuple[int, ...], int]:
    def whole_days(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            return False
        return int(value) >= 1

    if not windows or not all(whole_days(n) for n in windows) or len(set(windows)) != len(windows):
        raise ConfigError(
            f"feature windows must be distinct whole numbers of days ≥ 1, got {list(windows)}"
        )
    if not whole_days(delay_days):
        raise ConfigError(
            f"the fraud-label delay must be a whole number of days ≥ 1, got {delay_days!r}"
        )
    return tuple(int(n) for n in windows), int(delay_days)


@dataclass(frozen=True)
class _Columns:
    """The input columns as plain arrays; times in int64 nanoseconds."""

    transaction_ids: Int64Array
    times: Int64Array
    customers: Int64Array
    terminals: Int64Array
    amounts: FloatArray
    frauds: Int64Array

    @classmethod
    def from_arrays(cls, columns: Mapping[str, npt.NDArray[Any]]) -> _Columns:
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DatasetError(
                f"cannot compute features: missing column(s) {', '.join(missing)}; "
                "normalize the dataset with batchml.fraud.data.schema.normalize first"
            )
        stamps = np.asarray(columns["TX_DATETIME"], dtype="datetime64[ns]")
        amounts = np.asarray(columns["TX_AMOUNT"], dtype=np.float64)
        if np.isnat(stamps).any() or not np.isfinite(amounts).all():
            raise DatasetError(
                "cannot compute features: TX_DATETIME or TX_AMOUNT has missing or "
                "non-finite values; normalize the dataset first"
            )
        return cls(
            transaction_ids=np.asarray(columns["TRANSACTION_ID"], dtype=np.int64),
            times=stamps.view(np.int64),
            customers=np.asarray(columns["CUSTOMER_ID"], dtype=np.int64),
            terminals=np.asarray(columns["TERMINAL_ID"], dtype=np.int64),
            amounts=amounts,
            frauds=np.asarray(columns["TX_FRAUD"], dtype=np.int64),
        )


def _time_flags(times: Int64Array) -> tuple[Int64Array, Int64Array]:
    """TX_DURING_WEEKEND (Saturday, Sunday) and TX_DURING_NIGHT (hours 0-6) as 0/1."""
    weekday = (times // _NS_PER_DAY + _EPOCH_WEEKDAY) % 7
    hour = (times % _NS_PER_DAY) // _NS_PER_HOUR
    weekend = (weekday >= _FIRST_WEEKEND_DAY).astype(np.int64)
    night = (hour <= _LAST_NIGHT_HOUR).astype(np.int64)
    return weekend, night


#: Search keys ``group * stride + time coordinate`` must stay below this.
_KEY_LIMIT = 2**62


@dataclass(frozen=True)
class _Timeline:
    """All rows in time order (ties in input order), with an integer time coordinate.

    ``order[k]`` is the input row at timeline position k (by time, ties in input order) and
    ``coords[k] < span`` its time
    coordinate, non-decreasing in k. The coordinate is ``(t - t0) / unit``, with ``unit`` the
    largest divisor of one day that divides every ``t - t0`` (one second for data stamped to
    the second), when keys of ``rows * span`` still fit in int64; otherwise (nanosecond stamps
    over years) it is the rank of ``t`` among the distinct timestamps, and ``unit`` is None.
    Both keep window edges exact to the nanosecond.
    """

    order: Int64Array
    times: Int64Array
    coords: Int64Array
    span: int
    unit: int | None
    distinct: Int64Array

    @classmethod
    def build(cls, columns: _Columns) -> _Timeline:
        order = np.argsort(columns.times, kind="stable")  # stable: ties keep the input order
        times = columns.times[order]
        offsets = times - times[0]
        unit = math.gcd(int(np.gcd.reduce(offsets)), _NS_PER_DAY)
        span = int(offsets[-1]) // unit + 1
        if len(times) * (span + 1) < _KEY_LIMIT:
            return cls(order, times, offsets // unit, span, unit, distinct=times[:0])
        is_new = np.empty(len(times), dtype=bool)
        is_new[0] = True
        np.not_equal(times[1:], times[:-1], out=is_new[1:])
        ranks = np.cumsum(is_new, dtype=np.int64) - 1
        distinct = times[is_new]
        return cls(order, times, ranks, len(distinct) + 1, None, distinct)

    def first_rank_after(self, days: int, positions: Int64Array) -> Int64Array:
        """Per timeline position given, the rank of the first distinct time after
        ``t - days``."""
        times = self.times[positions]
        return np.searchsorted(self.distinct, times - days * _NS_PER_DAY, side="right")


@dataclass(frozen=True)
class _Groups:
    """Rows sorted by entity, then timeline position; one searchsorted for all.

    ``order[k]`` is the input row at position k and ``perm[k]`` its timeline position.
    ``keys = bases + coords``, with ``bases = group * timeline.span``, is non-decreasing, so
    a window edge in every group at once is one ``np.searchsorted`` on ``keys``. ``at`` are
    the positions whose windows are wanted (those of input rows from ``first`` on), in order;
    ``dest`` where each goes in the output.
    """

    timeline: _Timeline
    order: Int64Array
    perm: Int64Array
    bases: Int64Array
    keys: Int64Array
    at: Int64Array
    dest: Int64Array

    @classmethod
    def build(cls, entities: Int64Array, timeline: _Timeline, first: int) -> _Groups:
        codes = _group_codes(entities[timeline.order])
        perm = np.argsort(codes, kind="stable")  # stable: keeps time order inside a group
        sizes = np.bincount(codes)
        bases = np.repeat(np.arange(len(sizes), dtype=np.int64) * timeline.span, sizes)
        keys = bases + timeline.coords[perm]
        order = timeline.order[perm]
        if first == 0:
            at = np.arange(len(order), dtype=np.int64)
            return cls(timeline, order, perm, bases, keys, at, dest=order)
        at = np.flatnonzero(order >= first)
        return cls(timeline, order, perm, bases, keys, at, dest=order[at] - first)

    @property
    def every(self) -> bool:
        return len(self.at) == len(self.order)

    def window_starts(self, days: int) -> Int64Array:
        """Per wanted position k, the first position of k's group with time > ``t_k - days``."""
        unit = self.timeline.unit
        bases = self.bases if self.every else self.bases[self.at]
        if unit is None:
            lower = bases + self.timeline.first_rank_after(days, self.perm[self.at])
        else:  # coordinate > c_k - w  <=>  coordinate >= c_k - w + 1, not before the group
            keys = self.keys if self.every else self.keys[self.at]
            lower = np.maximum(keys - (days * _NS_PER_DAY // unit - 1), bases)
        return np.searchsorted(self.keys, lower, side="left")

    def scatter(self, values: FloatArray, out: FloatArray) -> None:
        """Write values given per wanted position into ``out`` in input row order."""
        out[self.dest] = values


def _group_codes(ids: Int64Array) -> npt.NDArray[np.integer[Any]]:
    """Group numbers in ``[0, len(ids))``, equal for equal ids; uint16 when they fit.

    Compact ids (a range narrower than both 2**16 and the row count) are used as they are,
    less their minimum; others are numbered by ``pd.factorize``. uint16 codes sort by radix.
    """
    low, high = int(ids.min()), int(ids.max())
    if high - low < min(2**16, len(ids)):
        return (ids - low).astype(np.uint16)
    codes, uniques = pd.factorize(ids)
    return codes.astype(np.uint16) if len(uniques) <= 2**16 else codes


def _customer_features(
    columns: _Columns, timeline: _Timeline, windows: tuple[int, ...], first: int, out: FloatArray
) -> None:
    """Count and mean amount over ``(t - n days, t]``, up to the current row in tie order.

    The window of position k ends at k (inclusive). Writes NB_TX then AVG_AMOUNT of each
    window into consecutive rows of ``out``.
    """
    groups = _Groups.build(columns.customers, timeline, first)
    amount_sums = _ExactSums.of(columns.amounts[groups.order])
    ends = groups.at + 1  # the window of position k ends after k
    counts = np.empty(len(ends))
    for i, n in enumerate(windows):
        starts = groups.window_starts(n)
        np.subtract(ends, starts, out=counts)
        groups.scatter(counts, out[2 * i])
        sums = amount_sums.between(starts, ends, every=groups.every)
        groups.scatter(sums / counts, out[2 * i + 1])


def _terminal_features(
    columns: _Columns,
    timeline: _Timeline,
    windows: tuple[int, ...],
    delay: int,
    first: int,
    out: FloatArray,
) -> None:
    """Count and fraud share over ``(t - (delay + n) days, t - delay days]``, 0 if empty.

    The handbook's ``rolling(d + n) - rolling(d)``: both windows end at the current row, so
    the difference is the rows between the two window starts. Writes NB_TX then RISK of each
    window into consecutive rows of ``out``.
    """
    groups = _Groups.build(columns.terminals, timeline, first)
    fraud_prefix = np.concatenate(([0], np.cumsum(columns.frauds[groups.order])))
    recent_starts = groups.window_starts(delay)
    for i, n in enumerate(windows):
        starts = groups.window_starts(delay + n)
        counts = (recent_starts - starts).astype(np.float64)
        frauds = (fraud_prefix[recent_starts] - fraud_prefix[starts]).astype(np.float64)
        risk = np.divide(frauds, counts, out=np.zeros_like(counts), where=counts > 0)
        groups.scatter(counts, out[2 * i])
        groups.scatter(risk, out[2 * i + 1])


#: The fixed binary grid of the exact sums: limb j holds bits [LOW + 32 j, LOW + 32 (j + 1)).
_LIMB_BITS = 32
_LOWEST_BIT = -96
_LIMB_MASK = (1 << _LIMB_BITS) - 1


@dataclass(frozen=True)
class _ExactSums:
    """Exact window sums of float values, rounded by a procedure that sees only the sum.

    ``positive[j]`` and ``negative[j]`` are the int64 prefix sums of limb j of the positive
    values and of the absolute negative ones (limbs: see ``_LIMB_BITS``). A window's limb sums
    are exact; carried into digits below 2**32 (one limb more than the largest value needs, to
    hold the carries of up to 2**31 rows), they are the canonical digits of the exact sum, and
    adding their floats from the highest digit down gives a value within about one rounding of
    it. Zero digits change nothing, so the result is the same whatever other (larger) values
    set the number of limbs.
    """

    positive: list[Int64Array | None]  # None: a limb that is 0 in every value
    negative: list[Int64Array | None]

    @classmethod
    def of(cls, values: FloatArray) -> _ExactSums:
        largest = float(np.abs(values).max()) if len(values) else 0.0
        _, exponent = math.frexp(largest)  # largest < 2**exponent
        limbs = max(1, -(-(exponent - _LOWEST_BIT) // _LIMB_BITS)) + 1
        has_negative = bool((values < 0).any())
        return cls(
            positive=cls._prefixes(np.where(values > 0, values, 0.0), limbs),
            negative=cls._prefixes(np.where(values < 0, -values, 0.0), limbs)
            if has_negative
            else [],
        )

    @staticmethod
    def _prefixes(magnitudes: FloatArray, limbs: int) -> list[Int64Array | None]:
        """Prefix sums of each limb; None for a limb that is 0 in every value (its window sums
        are 0): the top one always (it only holds carries), often the lowest ones. Skipping
        them leaves every digit and the rounding unchanged."""
        prefixes: list[Int64Array | None] = []
        for j in range(limbs - 1):
            scaled = np.floor(np.ldexp(magnitudes, -(_LOWEST_BIT + _LIMB_BITS * j)))
            digit = np.fmod(scaled, float(1 << _LIMB_BITS)).astype(np.int64)
            if not digit.any():
                prefixes.append(None)
                continue
            prefix = np.zeros(len(magnitudes) + 1, dtype=np.int64)
            np.cumsum(digit, out=prefix[1:])
            prefixes.append(prefix)
        prefixes.append(None)  # magnitudes < 2**(LOWEST + 32 (limbs - 1)): no bit in the top limb
        return prefixes

    def between(self, starts: Int64Array, ends: Int64Array, *, every: bool) -> FloatArray:
        """Per window i, the sum of the values at positions ``starts[i]`` up to ``ends[i]``
        (excluded); ``every``: ``ends`` is ``1 … n``, every position's own window."""
        total = self._rounded(self.positive, starts, None if every else ends)
        if self.negative:
            total -= self._rounded(self.negative, starts, None if every else ends)
        return total

    @staticmethod
    def _rounded(
        prefixes: list[Int64Array | None], starts: Int64Array, ends: Int64Array | None
    ) -> FloatArray:
        digits: list[Int64Array | None] = []
        carry: Int64Array | None = None  # None: 0 everywhere
        for prefix in prefixes:
            if prefix is None:
                limb_sum = carry
            else:
                limb_sum = (prefix[1:] if ends is None else prefix[ends]) - prefix[starts]
                if carry is not None:
                    limb_sum += carry
            if limb_sum is None:
                digits.append(None)
                continue
            digits.append(limb_sum & _LIMB_MASK)
            carry = limb_sum >> _LIMB_BITS
        total = np.zeros(len(starts))
        for j in range(len(digits) - 1, -1, -1):  # highest digit first; a 0 digit adds nothing
            digit = digits[j]
            if digit is not None:
                total += np.ldexp(digit.astype(np.float64), _LOWEST_BIT + _LIMB_BITS * j)
        return total

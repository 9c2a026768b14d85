"""From stored transactions to model inputs: per-day feature tables, cached on the storage root.

A feature table has one row per transaction: ``TRANSACTION_ID``, ``TX_DATETIME``,
``CUSTOMER_ID`` (for card precision), the model inputs (``TX_AMOUNT`` plus the 14 engineered
features: the handbook's 15 inputs) and the label ``TX_FRAUD``.

A day's features need the previous ``history_days_needed()`` (37) days of raw transactions.
:func:`compute_days` computes many days in one pass, reading each day once (a block of K days
reads K + 37 days, not 38 K, only the six columns the features use, and computes windows only
for the K days' rows: the look-back rows are only summed); the ``fraud.features`` task does so
for a block of days and publishes ``<root>/features/<featureset>/<day>.parquet`` per day.
Readers use that cache when it is there and compute the same values themselves when it is not.
The bytes are identical either way: a transaction's features depend only on the rows of its
look-back (see :mod:`batchml.fraud.features`), so a day computed alone or within any block
gives the same table.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batchml.errors import ConfigError, DatasetError
from batchml.fraud.data import datasets
from batchml.fraud.data.schema import to_frame
from batchml.fraud.features.behaviour import (
    BEHAVIOUR_COLUMNS,
    behaviour_arrays,
    behaviour_history_days,
    compute_behaviour,
)
from batchml.fraud.features.engineered import (
    DEFAULT_DELAY_DAYS,
    DEFAULT_WINDOWS,
    REQUIRED_COLUMNS,
    compute_features,
    feature_arrays,
    feature_columns,
    history_days_needed,
)
from batchml.storage import Storage

log = logging.getLogger("batchml.fraud")

KEY_COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID")
LABEL = "TX_FRAUD"
#: never model inputs: identifiers and labels (the tutorial trained on TX_FRAUD itself)
FORBIDDEN_INPUTS = frozenset(
    {"TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD", "TX_FRAUD_SCENARIO"}
)


#: bump when the feature code changes what it computes: cached tables of older code are ignored
FEATURE_CODE_VERSION = 2  # 2: equal timestamps in row order (pandas rolling), exact sums
#: the same for the columns of :mod:`batchml.fraud.features.behaviour`
BEHAVIOUR_CODE_VERSION = 1

#: The feature sets: the handbook's 15 inputs, or those and the behaviour columns.
FEATURE_SETS = ("handbook", "behaviour")
DEFAULT_FEATURE_SET = "handbook"


@dataclass(frozen=True)
class FeatureSpec:
    """Which features: window sizes (days), the label delay (days) of the terminal risk, and the
    feature set (``FEATURE_SETS``): ``"behaviour"`` adds the columns of
    :mod:`batchml.fraud.features.behaviour` after the handbook's 15 inputs."""

    windows: tuple[int, ...] = DEFAULT_WINDOWS
    delay_days: int = DEFAULT_DELAY_DAYS
    feature_set: str = DEFAULT_FEATURE_SET

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ConfigError(
                f"unknown feature set {self.feature_set!r}: use one of {', '.join(FEATURE_SETS)}"
            )

    @property
    def id(self) -> str:
        windows = "-".join(map(str, self.windows))
        base = f"v{FEATURE_CODE_VERSION}-w{windows}_d{self.delay_days}"
        if self.feature_set == "handbook":
            return base  # the cache path of every earlier table
        return f"{base}_{self.feature_set}{BEHAVIOUR_CODE_VERSION}"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The model's input columns, in order."""
        names = ("TX_AMOUNT", *feature_columns(self.windows))
        if self.feature_set == "behaviour":
            names = (*names, *BEHAVIOUR_COLUMNS)
        assert not FORBIDDEN_INPUTS.intersection(names)
        return names

    @property
    def history_days(self) -> int:
        days = history_days_needed(self.windows, self.delay_days)
        if self.feature_set == "behaviour":
            days = max(days, behaviour_history_days(self.delay_days))
        return days

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"windows": list(self.windows), "delay_days": self.delay_days}
        if self.feature_set != "handbook":  # the handbook's payloads keep their earlier bytes
            data["feature_set"] = self.feature_set
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FeatureSpec:
        """The spec of a payload; one written without a feature set is the handbook's."""
        if not data:
            return cls(feature_set="handbook")
        return cls(
            windows=tuple(int(w) for w in data["windows"]),
            delay_days=int(data["delay_days"]),
            feature_set=str(data.get("feature_set", "handbook")),
        )

    def cache_path(self, day: str) -> str:
        return f"features/{self.id}/{day}.parquet"


def feature_days(payload: dict[str, Any]) -> list[str]:
    """The days a ``fraud.features`` payload computes: ``days``, or its one ``dataset``."""
    days = payload.get("days")
    return [str(d) for d in days] if isinstance(days, list) else [str(payload.get("dataset"))]


def feature_table(raw: pd.DataFrame, history: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Features of the rows of ``raw``, using ``history`` (earlier transactions) for windows."""
    if len(history):
        history = history[~history["TRANSACTION_ID"].isin(raw["TRANSACTION_ID"])]
        both = pd.concat([history, raw], ignore_index=True)
    else:
        both = raw.reset_index(drop=True)
    feats = features_of(both, spec)
    return _table(raw, feats.iloc[len(both) - len(raw) :], spec)


def features_of(tx: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """``compute_features`` of ``tx``, with the behaviour columns when the spec has them."""
    feats = compute_features(tx, windows=spec.windows, delay_days=spec.delay_days)
    if spec.feature_set == "behaviour":
        feats = pd.concat([feats, compute_behaviour(tx, delay_days=spec.delay_days)], axis=1)
    return feats


def _table(raw: pd.DataFrame, feats: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature table of ``raw`` from its rows of ``compute_features`` (same row order)."""
    columns = {name: raw[name].to_numpy() for name in (*KEY_COLUMNS, "TX_AMOUNT")}
    columns.update({name: feats[name].to_numpy() for name in spec.inputs[1:]})
    columns[LABEL] = raw[LABEL].to_numpy()
    return pd.DataFrame(columns)


@dataclass
class ComputedDays:
    """What :func:`compute_days` made: a feature table per readable day (as Arrow, ready to
    write with :func:`arrow_to_bytes`), a DatasetError per other requested day."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    invalid: dict[str, DatasetError] = field(default_factory=dict)

    def frame(self, day: str) -> pd.DataFrame:
        """The day's feature table as pandas, as :func:`compute_day` returns it."""
        frame: pd.DataFrame = self.tables[day].to_pandas()
        return frame


def compute_days(storage: Storage, days: Sequence[str], spec: FeatureSpec) -> ComputedDays:
    """The feature tables of several stored days, reading each stored day at most once.

    Days closer than the look-back are computed together, in one ``compute_features`` call
    over their look-back and themselves. A requested day that is missing, unreadable or invalid
    gets its DatasetError in ``invalid`` (it is left out of the others' windows, as
    :func:`compute_day` leaves an invalid history day out); an invalid look-back day only
    warns. Each table equals ``compute_day(storage, day, spec)`` exactly."""
    result = ComputedDays()
    for segment in _segments(sorted(set(days)), spec.history_days):
        _compute_segment(storage, segment, spec, result)
    return result


def _segments(days: list[str], history: int) -> list[list[str]]:
    """Runs of days whose look-backs overlap (consecutive days at most ``history`` apart)."""
    segments: list[list[str]] = []
    for day in days:
        gap = datasets.parse_day(day) - datasets.parse_day(segments[-1][-1]) if segments else None
        if gap is not None and gap <= timedelta(days=history):
            segments[-1].append(day)
        else:
            segments.append([day])
    return segments


def _compute_segment(
    storage: Storage, wanted: list[str], spec: FeatureSpec, result: ComputedDays
) -> None:
    first, last = datasets.parse_day(wanted[0]), datasets.parse_day(wanted[-1])
    span = [(first + timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]
    tables: list[pa.Table] = []
    read: list[str] = []
    for day, table in _read_days([*datasets.days_before(wanted[0], spec.history_days), *span],
                                 storage):  # fmt: skip
        if isinstance(table, pa.Table):
            tables.append(table)
            read.append(day)
        elif day in wanted:
            result.invalid[day] = table
        elif storage.exists(datasets.day_path(day)):
            _skip_history_day(day, table)
    if not tables:
        return
    bounds = np.cumsum([0, *(t.num_rows for t in tables)])
    rows = {day: (int(bounds[i]), int(bounds[i + 1])) for i, day in enumerate(read)}
    raw = pa.concat_tables(tables)
    del tables
    columns = {name: raw.column(name).to_numpy() for name in _RAW_COLUMNS}
    del raw  # one copy of the rows: the arrays
    if not pd.Index(columns["TRANSACTION_ID"]).is_unique:
        both = pd.DataFrame(columns)  # compute_day drops a raw day's ids from its history
        for day in (d for d in wanted if d in rows):
            lookback = set(datasets.days_before(day, spec.history_days))
            earlier = [d for d in read if d in lookback]
            start = rows[earlier[0]][0] if earlier else rows[day][0]
            history = both.iloc[start : rows[day][0]]
            day_rows = both.iloc[rows[day][0] : rows[day][1]]
            result.tables[day] = _to_arrow(feature_table(day_rows, history, spec))
        return
    kept = [d for d in wanted if d in rows]
    offset = rows[kept[0]][0] if kept else len(columns["TRANSACTION_ID"])
    whole = _arrow_table(columns, spec, offset)  # sliced per day: the same bytes as alone
    del columns
    for day in kept:
        start, end = rows[day]
        result.tables[day] = whole.slice(start - offset, end - start)


#: the raw columns a feature table is made of
_RAW_COLUMNS = (*REQUIRED_COLUMNS, *(c for c in KEY_COLUMNS if c not in REQUIRED_COLUMNS))

#: threads reading day files (Parquet decoding releases the GIL)
_READ_THREADS = 4


def _read_days(days: list[str], storage: Storage) -> Iterator[tuple[str, pa.Table | DatasetError]]:
    """Each day with its validated table, or the DatasetError reading it raised; in order."""

    def read(day: str) -> pa.Table | DatasetError:
        try:
            return datasets.read_table(storage, datasets.day_path(day), _RAW_COLUMNS)
        except DatasetError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        yield from zip(days, pool.map(read, days), strict=True)


def _arrow_table(columns: dict[str, npt.NDArray[Any]], spec: FeatureSpec, first: int) -> pa.Table:
    """The feature table of the raw rows from position ``first`` on (those before are their
    look-back), given as arrays; built on them and on the feature arrays without a copy, it is
    the same table as :func:`_to_arrow` of :func:`_table` on those rows."""
    feats = feature_arrays(
        columns, windows=spec.windows, delay_days=spec.delay_days, first_row=first
    )
    if spec.feature_set == "behaviour":
        feats.update(behaviour_arrays(columns, delay_days=spec.delay_days, first_row=first))
    names = [*KEY_COLUMNS, "TX_AMOUNT", *spec.inputs[1:], LABEL]
    return pa.table(
        {name: pa.array(feats[name] if name in feats else columns[name][first:]) for name in names}
    )


def release_memory() -> None:
    """Hand back to the system the memory a features computation freed: Arrow's pool keeps
    freed blocks, and glibc's malloc keeps freed heap below its trim threshold. A worker then
    starts its next item (a train step holding its model) from what it really holds."""
    pa.default_memory_pool().release_unused()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def _history_for(storage: Storage, first_day: str, spec: FeatureSpec) -> pd.DataFrame:
    """The stored days before ``first_day`` that its windows reach.

    History is best effort: a day that is unreadable or invalid is left out (with a warning)
    rather than failing every later day; that day's own items fail and go dead by themselves.
    """
    days = datasets.days_before(first_day, spec.history_days)
    return datasets.load_days(storage, days, on_invalid=_skip_history_day)


def _skip_history_day(day: str, error: DatasetError) -> None:
    log.warning("history day %s left out of the feature windows: %s", day, error)


def compute_day(storage: Storage, day: str, spec: FeatureSpec) -> pd.DataFrame:
    """The feature table of one stored training day, computed from raw transactions."""
    raw = datasets.read_parquet(storage, datasets.day_path(day))
    return feature_table(raw, _history_for(storage, day, spec), spec)


def compute_frame(storage: Storage, raw: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Feature table of a standalone dataset (e.g. a testing file), history from stored days."""
    first = str(pd.Timestamp(raw["TX_DATETIME"].min()).date())
    return feature_table(raw, _history_for(storage, first, spec), spec)


def _to_arrow(table: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(table, preserve_index=False)


def table_to_bytes(table: pd.DataFrame) -> bytes:
    return arrow_to_bytes(_to_arrow(table))


def arrow_to_bytes(table: pa.Table) -> bytes:
    """A feature table as Parquet bytes (the cache format): the same rows give the same bytes.

    Plain (no dictionary) zstd pages without statistics: feature columns are mostly distinct
    floats, and this writes ~40 % faster and smaller than the defaults. No pandas metadata:
    a table made from a DataFrame and one made from arrays give the same bytes."""
    buffer = pa.BufferOutputStream()
    pq.write_table(
        table.replace_schema_metadata(None),
        buffer,
        compression="zstd",
        use_dictionary=False,
        write_statistics=False,
    )
    return bytes(buffer.getvalue())


def load_dataset_features(storage: Storage, relpath: str, spec: FeatureSpec) -> pd.DataFrame:
    """Feature table of a stored dataset: a training day (cached when possible) or any file."""
    day = _training_day(relpath)
    if day is not None:
        cached = spec.cache_path(day)
        if storage.exists(cached):
            try:
                return to_frame(pq.read_table(storage.resolve(cached)))
            except (pa.ArrowException, OSError):
                pass  # a damaged cache is recomputed, never trusted
        return compute_day(storage, day, spec)
    return compute_frame(storage, datasets.read_parquet(storage, relpath), spec)


def load_many(storage: Storage, relpaths: list[str], spec: FeatureSpec) -> pd.DataFrame:
    tables = [load_dataset_features(storage, p, spec) for p in relpaths]
    if not tables:
        raise DatasetError("no datasets given")
    return pd.concat(tables, ignore_index=True)


def xy(table: pd.DataFrame, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels of a feature table."""
    return table[list(spec.inputs)].to_numpy(dtype=np.float64), table[LABEL].to_numpy()


def _training_day(relpath: str) -> str | None:
    prefix = f"datasets/{datasets.TRAINING}/"
    if relpath.startswith(prefix) and relpath.endswith(".parquet"):
        return relpath[len(prefix) : -len(".parquet")]
    return None

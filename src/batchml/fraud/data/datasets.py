"""Datasets on the storage root: import (validate + convert to Parquet), list, and load.

Layout: ``<root>/datasets/training/<YYYY-MM-DD>.parquet`` holds one calendar day of
transactions each (simulated days and imported training files, split by day);
``<root>/datasets/testing/<name>.parquet`` holds held-out files kept whole.
"""

from __future__ import annotations

import fnmatch
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batchml.errors import DatasetError, UntrustedPickleError
from batchml.fraud.data.safe_pickle import read_pickled_frame
from batchml.fraud.data.schema import ARROW_SCHEMA, canonical_table, normalize, to_frame
from batchml.storage import Storage

TRAINING = "training"
TESTING = "testing"
PICKLE_SUFFIXES = (".pkl", ".pickle")
log = logging.getLogger("batchml.data")
READABLE_SUFFIXES = (".parquet", ".csv", *PICKLE_SUFFIXES)


@dataclass(frozen=True)
class Imported:
    source: str
    target: str  # root-relative
    rows: int
    status: str  # written | unchanged | replaced


def read_file(path: Path, *, trust_pickle: bool = False) -> pd.DataFrame:
    """Read a user's dataset file (Parquet, CSV, or with ``trust_pickle`` a pickle) unvalidated."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise UntrustedPickleError(
                f"{path}: refusing to load a pickle. Unpickling can run arbitrary code, so "
                "batchml reads pickles only when you vouch for the file: pass --trust-pickle "
                "(even then only plain pandas DataFrames are accepted), or convert it to Parquet"
            )
        return read_pickled_frame(path)
    try:
        if suffix == ".parquet":
            return to_frame(pq.read_table(path))
        if suffix == ".csv":
            return pd.read_csv(path, parse_dates=["TX_DATETIME"])
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: unreadable {suffix[1:]} file ({exc}); re-export it") from None
    raise DatasetError(
        f"{path}: unsupported file type {suffix or '(none)'}; use .parquet, .csv or .pkl"
    )


def frame_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialise a canonical frame deterministically (same rows -> same bytes)."""
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(df, schema=ARROW_SCHEMA, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def read_table(storage: Storage, relpath: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read and validate a stored dataset as an Arrow table; errors name the file.

    With ``columns``, only those columns (canonical names) are decoded when the file is in the
    canonical schema already (what batchml stores): the table holds them, validated as the
    whole file would be. Other files are read whole and normalised first."""
    path = storage.resolve(relpath, what="dataset path")
    try:
        with pq.ParquetFile(path) as handle:
            if columns is not None and _canonical_file(handle):
                table = handle.read(columns=list(columns))
                if table.num_rows and not any(c.null_count for c in table.columns):
                    return table
            table = handle.read()
    except FileNotFoundError:
        raise DatasetError(f"{relpath}: no such dataset under {storage.root}") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{relpath}: corrupt or unreadable Parquet file ({exc})") from None
    canonical = canonical_table(table, relpath)
    return canonical if columns is None else canonical.select(list(columns))


def _canonical_file(handle: pq.ParquetFile) -> bool:
    return bool(handle.schema_arrow.remove_metadata().equals(ARROW_SCHEMA))


def read_parquet(storage: Storage, relpath: str) -> pd.DataFrame:
    """Read and validate a stored dataset; errors name the file."""
    return to_frame(read_table(storage, relpath))


def _expand(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in READABLE_SUFFIXES)
            if not files:
                raise DatasetError(f"{path}: folder holds no .parquet, .csv or .pkl files")
            yield from files
        elif path.exists():
            yield path
        else:
            raise DatasetError(f"{path}: no such file or folder")


def guess_kind(path: Path) -> str:
    """``testing`` for files named test* or in a folder named test/tests/testing, else training."""
    if path.stem.lower().startswith("test") or path.parent.name.lower() in (
        "test",
        "tests",
        TESTING,
    ):
        return TESTING
    return TRAINING


def _store(storage: Storage, target: str, df: pd.DataFrame, force: bool, source: str) -> Imported:
    data = frame_to_parquet_bytes(df)
    path = storage.resolve(target)
    status = "written"
    if path.exists():
        if path.read_bytes() == data:
            return Imported(source, target, len(df), "unchanged")
        if not force:
            raise DatasetError(
                f"{source}: {target} already exists with other content; "
                "pass --force to replace it (already-trained lineage versions keep the old data)"
            )
        status = "replaced"
    storage.write_bytes(target, data)
    return Imported(source, target, len(df), status)


def import_files(
    storage: Storage,
    paths: Iterable[Path],
    *,
    kind: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    on_file: Callable[[Imported], None] | None = None,
) -> list[Imported]:
    """Validate each file and store it as Parquet; training files are split by calendar day.

    Each file is validated before anything of it is written; a bad file raises DatasetError
    naming it, and the files imported before it stay imported.
    """
    done: list[Imported] = []
    for path in _expand(paths):
        df = normalize(read_file(path, trust_pickle=trust_pickle), str(path))
        file_kind = kind or guess_kind(path)
        warn_amounts(df, str(path))
        if file_kind == TESTING:
            results = [
                _store(storage, f"datasets/{TESTING}/{path.stem}.parquet", df, force, str(path))
            ]
        else:
            parts = list(split_days(df))
            check_named_day(path, [day for day, _ in parts])
            results = [
                _store(storage, f"datasets/{TRAINING}/{day}.parquet", part, force, str(path))
                for day, part in parts
            ]
        for result in results:
            done.append(result)
            if on_file:
                on_file(result)
    return done


#: a TX_AMOUNT above this is reported as absurd (the simulator's amounts stay far below)
ABSURD_AMOUNT = 1_000_000.0


def warn_amounts(df: pd.DataFrame, source: str) -> tuple[int, int]:
    """Log one warning with the counts of negative and absurd (> ABSURD_AMOUNT) amounts;
    they are imported as they are (a refund may be negative). Returns the two counts."""
    amounts = df["TX_AMOUNT"]
    negative, absurd = int((amounts < 0).sum()), int((amounts > ABSURD_AMOUNT).sum())
    if negative or absurd:
        log.warning(
            "%s: %d of %d transaction(s) have a negative TX_AMOUNT and %d one above %s; "
            "imported as they are: check the export if they are not refunds",
            source, negative, len(df), absurd, f"{ABSURD_AMOUNT:,.0f}",
        )  # fmt: skip
    return negative, absurd


def check_named_day(path: Path, days: list[str]) -> None:
    """Refuse a training file named for a day (``2018-05-01.pkl``) that holds none of that
    day's rows: it would be stored under other days without a word."""
    try:
        named = date.fromisoformat(path.stem).isoformat()
    except ValueError:
        return  # not named for a day: its rows say which days it holds
    if days and named not in days:
        held = days[0] if len(days) == 1 else f"{days[0]} … {days[-1]} ({len(days)} days)"
        raise DatasetError(
            f"{path}: named for {named} but its transactions are of {held}; rename the file "
            "after its day, or fix its TX_DATETIME column"
        )
    if len(days) > 1:
        log.warning(
            "%s: named for %s but also holds transactions of %d other day(s); each day is "
            "stored in its own file", path, named, len(days) - 1,
        )  # fmt: skip


def split_days(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """``("YYYY-MM-DD", rows of that calendar day)`` in date order, one per day present.

    The one day-splitter (``data import`` and ``data generate``). Within a day rows are in
    ``TX_DATETIME`` order and equal timestamps keep their order in ``df`` (a stable sort):
    pandas' rule, the one the features follow for same-instant transactions of one card, so a
    stored day holds its ties in file order. Each part gets a fresh RangeIndex; every row
    appears in exactly one part.
    """
    stamps = df["TX_DATETIME"].to_numpy(dtype="datetime64[ns]")
    if len(stamps) == 0:
        return
    order = np.argsort(stamps, kind="stable")
    day = stamps[order].astype("datetime64[D]")
    bounds = np.flatnonzero(day[1:] != day[:-1]) + 1
    for start, rows in zip([0, *bounds.tolist()], np.split(order, bounds), strict=True):
        yield str(day[start]), df.iloc[rows].reset_index(drop=True)


def write_day(storage: Storage, day: str, df: pd.DataFrame) -> str:
    """Store one day's canonical transactions (the simulator's output) atomically."""
    target = f"datasets/{TRAINING}/{day}.parquet"
    storage.write_bytes(target, frame_to_parquet_bytes(df))
    return target


def overwritten_days(storage: Storage, encoded: dict[str, bytes]) -> list[str]:
    """The days of ``encoded`` (day -> Parquet bytes) stored already with other content: writing
    them would replace data (imported, or simulated with other settings). Identical ones are not
    listed: writing them again changes nothing."""
    return [
        day
        for day, data in encoded.items()
        if (path := storage.resolve(day_path(day))).exists() and path.read_bytes() != data
    ]


def training_days(storage: Storage, pattern: str = "*", start: str | None = None,
                  end: str | None = None) -> list[str]:  # fmt: skip
    """Imported training days (YYYY-MM-DD), sorted, filtered by glob and inclusive date range."""
    folder = storage.dataset_dir(TRAINING)
    if not folder.is_dir():
        return []
    days = sorted(p.stem for p in folder.glob("*.parquet") if not p.name.startswith("."))
    return [
        d
        for d in days
        if fnmatch.fnmatch(d, pattern)
        and (start is None or d >= start)
        and (end is None or d <= end)
    ]


def day_path(day: str) -> str:
    return f"datasets/{TRAINING}/{parse_day(day).isoformat()}.parquet"


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DatasetError(f"{text!r} is not a day; write it as YYYY-MM-DD") from None


def days_before(day: str, n: int) -> list[str]:
    """The ``n`` calendar days before ``day``, oldest first."""
    d = parse_day(day)
    return [(d - timedelta(days=k)).isoformat() for k in range(n, 0, -1)]


def load_days(
    storage: Storage,
    days: Iterable[str],
    on_invalid: Callable[[str, DatasetError], None] | None = None,
) -> pd.DataFrame:
    """Concatenate the stored days that exist (missing ones are skipped), in order.

    An unreadable or invalid day raises DatasetError, unless ``on_invalid`` is given: then it
    is told and the day is skipped like a missing one."""
    tables = []
    for day in days:
        if not storage.exists(day_path(day)):
            continue
        try:
            tables.append(read_table(storage, day_path(day)))
        except DatasetError as exc:
            if on_invalid is None:
                raise
            on_invalid(day, exc)
    if not tables:
        return to_frame(ARROW_SCHEMA.empty_table())
    return to_frame(pa.concat_tables(tables))

"""The transaction table: the tutorial's nine columns, their canonical types, and validation.

Every dataset batchml stores (``<root>/datasets/**.parquet``) has exactly these columns in these
types. :func:`normalize` turns what a user offers (the tutorial's pickles store ``TX_DATETIME``
as int64 nanoseconds and the ids as Python objects) into that form, or raises a DatasetError
naming the file, the column and what to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from batchml.errors import DatasetError

#: column -> canonical dtype, in the tutorial's order
COLUMNS: dict[str, str] = {
    "TRANSACTION_ID": "int64",
    "TX_DATETIME": "datetime64[ns]",
    "CUSTOMER_ID": "int64",
    "TERMINAL_ID": "int64",
    "TX_AMOUNT": "float64",
    "TX_TIME_SECONDS": "int64",
    "TX_TIME_DAYS": "int64",
    "TX_FRAUD": "int64",
    "TX_FRAUD_SCENARIO": "int64",
}


#: the same columns as an Arrow schema: what stored Parquet files hold
ARROW_SCHEMA = pa.schema(
    [
        pa.field(
            name,
            pa.timestamp("ns")
            if dtype.startswith("datetime")
            else pa.from_numpy_dtype(np.dtype(dtype)),
        )
        for name, dtype in COLUMNS.items()
    ]
)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a pandas DataFrame (typed: pyarrow ships no stubs)."""
    frame: pd.DataFrame = table.to_pandas()
    return frame


def canonical_table(table: pa.Table, source: str) -> pa.Table:
    """A stored table in canonical form: checked cheaply when it already is, else normalised."""
    canonical = table.schema.remove_metadata().equals(ARROW_SCHEMA) and table.num_rows > 0
    if canonical and not any(table.column(i).null_count for i in range(table.num_columns)):
        return table
    frame = normalize(to_frame(table), source)
    return pa.Table.from_pandas(frame, schema=ARROW_SCHEMA, preserve_index=False)


def _as_datetime(values: pd.Series, source: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        series = values
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return series.astype("datetime64[ns]")
    if pd.api.types.is_integer_dtype(values):  # the tutorial: int64 nanoseconds since the epoch
        return pd.to_datetime(values, unit="ns").astype("datetime64[ns]")
    try:
        return pd.to_datetime(values, format="ISO8601").astype("datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise DatasetError(
            f"{source}: column TX_DATETIME is not a timestamp ({exc}); "
            "give datetimes, ISO-8601 strings or int64 nanoseconds since the epoch"
        ) from None


def _as_integer(values: pd.Series, column: str, source: str) -> pd.Series:
    if pd.api.types.is_integer_dtype(values):
        return values.astype("int64")
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any() or not np.all(np.mod(numeric.dropna().to_numpy(dtype="float64"), 1) == 0):
        example = values[bad].iloc[0] if bad.any() else "a fractional value"
        raise DatasetError(
            f"{source}: column {column} must hold integers, found {example!r}; fix the file and "
            "import it again"
        )
    return numeric.astype("int64")


def normalize(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate ``df`` and return it in canonical column order and types.

    ``source`` names the file in every error message.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{source}: missing required column(s) {', '.join(missing)}; a transaction dataset "
            f"needs {', '.join(COLUMNS)}"
        )
    if len(df) == 0:
        raise DatasetError(f"{source}: the dataset is empty (0 rows); nothing to train on")
    nulls = [c for c in COLUMNS if df[c].isna().any()]
    if nulls:
        counts = ", ".join(f"{c} ({int(df[c].isna().sum())} rows)" for c in nulls)
        raise DatasetError(f"{source}: missing values in required column(s) {counts}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for column, dtype in COLUMNS.items():
        values = df[column].reset_index(drop=True)
        if dtype.startswith("datetime"):
            out[column] = _as_datetime(values, source)
        elif dtype == "float64":
            numeric = pd.to_numeric(values, errors="coerce")
            if numeric.isna().any() or not np.isfinite(numeric.to_numpy(dtype="float64")).all():
                raise DatasetError(f"{source}: column {column} must hold finite numbers")
            out[column] = numeric.astype("float64")
        else:
            out[column] = _as_integer(values, column, source)
    if not out["TX_FRAUD"].isin((0, 1)).all():
        raise DatasetError(f"{source}: column TX_FRAUD must be 0 or 1")
    if out["TRANSACTION_ID"].duplicated().any():
        dup = int(out.loc[out["TRANSACTION_ID"].duplicated(), "TRANSACTION_ID"].iloc[0])
        raise DatasetError(f"{source}: TRANSACTION_ID {dup} appears more than once")
    return out

"""Loading the tutorial's pickled DataFrames without letting a pickle run code.

Pickles are accepted only at import time, from a local path the user names, with an explicit
``--trust-pickle`` (DESIGN.md). Even then, the unpickler resolves only the handful of pandas and
NumPy constructors a DataFrame pickle needs: a pickle that names anything else (``os.system``,
``builtins.eval``, a user class ...) is refused before any of it is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

import pandas as pd
from pandas.compat import pickle_compat

from batchml.errors import DatasetError

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("__builtin__", "slice"),
        ("__builtin__", "bytearray"),
        ("_codecs", "encode"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("functools", "partial"),
        ("pyarrow.lib", "_restore_array"),
        ("pyarrow.lib", "py_buffer"),
        ("pyarrow.lib", "type_for_alias"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        *(
            ("pandas", name)
            for name in (
                "DataFrame",
                "Series",
                "Index",
                "RangeIndex",
                "DatetimeIndex",
                "Categorical",
                "CategoricalDtype",
                "DatetimeTZDtype",
                "StringDtype",
            )
        ),
        ("pandas.arrays", "ArrowStringArray"),
        ("pandas.arrays", "StringArray"),
        ("pandas.arrays", "DatetimeArray"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.series", "Series"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.indexes.datetimes", "DatetimeIndex"),
        ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
        ("pandas.core.arrays.datetimes", "DatetimeArray"),
        ("pandas._libs.tslibs.timestamps", "Timestamp"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"),
        ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    }
)
_ALLOWED_MODULE_PREFIXES = ("numpy.dtypes",)  # numpy's DType classes (Int64DType, ...)


class _RestrictedUnpickler(pickle_compat.Unpickler):  # type: ignore[misc]
    """pandas' compatibility unpickler, limited to the constructors of plain DataFrames."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        mapped = pickle_compat._class_locations_map.get(key, key)
        if key in _ALLOWED or mapped in _ALLOWED or mapped[0].startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"the pickle references {module}.{name}, which is not a pandas/NumPy data type"
        )


def _load(handle: IO[bytes]) -> Any:
    return _RestrictedUnpickler(handle).load()


def read_pickled_frame(path: Path) -> pd.DataFrame:
    """Read a pickled pandas DataFrame that the user explicitly trusted, with the allow-list."""
    try:
        with open(path, "rb") as handle:
            obj = _load(handle)
    except pickle.UnpicklingError as exc:
        raise DatasetError(
            f"{path}: refused to unpickle: {exc}. Only plain pandas DataFrames are accepted; "
            "convert the file to Parquet with a trusted pandas (df.to_parquet) and import that"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DatasetError(f"{path}: not a readable pickled DataFrame ({exc})") from None
    if not isinstance(obj, pd.DataFrame):
        raise DatasetError(f"{path}: the pickle holds a {type(obj).__name__}, not a DataFrame")
    return obj

"""The checks the safe unpickler runs before each pandas/pyarrow call and before every BUILD.

:mod:`batchml.fraud.data.pickle_allowlist` holds the names and the builtin/NumPy calls; this module
adds the pandas and pyarrow constructors (a frame's blocks and manager are checked in
:mod:`batchml.fraud.data.pickle_blocks`), and the three entry points the unpickler uses:
:func:`check_call` (REDUCE), :func:`check_new` (NEWOBJ) and :func:`check_build` (BUILD).
Every check looks at exact types and at sizes against the bytes present in the file, because
pandas' and pyarrow's own reconstructors trust their pickles (a block placed outside its frame,
a category code past the categories, an Arrow array longer than its buffers would read memory
out of bounds later).
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from batchml.fraud.data.pickle_allowlist import (
    CALLS,
    UNITS,
    Budget,
    Refused,
    Result,
    arity,
    array_of,
    brief,
    calls,
    integer,
    objects,
    plain_dtype,
    role_of,
    shape_of,
)
from batchml.fraud.data.pickle_blocks import (
    build_old_manager,
    call_block_partial,
    column_values,
)

_SCALAR_NAMES = (str, int, float, bool, type(None))
_ARROW_STRINGS = (pa.StringArray, pa.LargeStringArray)
_MAX = 2**62


@calls("_new_Index")
def _new_index(args: tuple[Any, ...], budget: Budget) -> Result:
    cls, state = arity(args, 2, "pandas _new_Index")
    if type(state) is not dict or type(state.get("name")) not in _SCALAR_NAMES:
        raise Refused("an Index whose state is not a dict with a plain name")
    if cls is pd.RangeIndex and set(state) <= {"name", "start", "stop", "step"}:
        start, stop = (
            integer(state.get(k, 0), "a RangeIndex bound", -_MAX) for k in ("start", "stop")
        )
        step = integer(state.get("step", 1), "a RangeIndex step", -_MAX)
        if step == 0:
            raise Refused("a RangeIndex with step 0")
        budget.charge(8 * len(range(start, stop, step)), "a RangeIndex")
    elif cls is pd.Index and set(state) == {"data", "name"}:
        budget.charge(column_values(state["data"], (1,)).nbytes, "an Index")  # pandas copies it
    else:
        raise Refused(f"an index of type {getattr(cls, '__name__', cls)!s:.40} or its state")
    return objects()["_new_Index"](cls, state), False


@calls("_unpickle_NDArrayBacked")
def _ndarray_backed(args: tuple[Any, ...], budget: Budget) -> Result:
    cls, checksum, state = arity(args, 3, "pandas __pyx_unpickle_NDArrayBacked")
    allowed = {objects()[n] for n in ("DatetimeArray", "TimedeltaArray", "Categorical")}
    if cls not in allowed | {objects()["StringArray"]} or type(checksum) is not int or state:
        raise Refused(f"pandas NDArrayBacked unpickling of {brief(cls)}")
    return objects()["_unpickle_NDArrayBacked"](cls, checksum, None), True


@calls("StringDtype")
def _string_dtype(args: tuple[Any, ...], budget: Budget) -> Result:
    if len(args) == 1:  # pandas < 2.3 pickled only the storage
        args = (*args, pd.NA)
    storage, na_value = arity(args, 2, "StringDtype")
    nan = type(na_value) is float and math.isnan(na_value)
    if storage not in ("python", "pyarrow") or not (na_value is pd.NA or nan):
        raise Refused(f"StringDtype{brief(args)}")
    return pd.StringDtype(storage, na_value), False


@calls("type_for_alias")
def _type_for_alias(args: tuple[Any, ...], budget: Budget) -> Result:
    (alias,) = arity(args, 1, "pyarrow type_for_alias")
    if alias not in ("string", "large_string", "utf8", "large_utf8"):
        raise Refused(f"pyarrow type {brief(alias)} (only string columns are read)")
    return pa.type_for_alias(alias), False


@calls("py_buffer")
def _py_buffer(args: tuple[Any, ...], budget: Budget) -> Result:
    (data,) = arity(args, 1, "pyarrow py_buffer")
    if type(data) not in (bytes, bytearray):
        raise Refused(f"pyarrow py_buffer of a {type(data).__name__}")
    return pa.py_buffer(data), False


@calls("_restore_array")
def _restore_array(args: tuple[Any, ...], budget: Budget) -> Result:
    (data,) = arity(args, 1, "pyarrow _restore_array")
    if type(data) is not tuple or len(data) != 7:
        raise Refused("pyarrow _restore_array of anything but an array's parts")
    kind, length, nulls, offset, buffers, children, dictionary = data
    if not isinstance(kind, pa.DataType) or kind not in (pa.string(), pa.large_string()):
        raise Refused(f"a pyarrow array of type {brief(kind)} (only strings are read)")
    integer(length, "a pyarrow array length")
    integer(nulls, "a pyarrow null count", -1)
    integer(offset, "a pyarrow offset")
    if type(buffers) is not list or len(buffers) != 3 or children != [] or dictionary is not None:
        raise Refused("a pyarrow string array whose parts are not 3 buffers")
    if not all(b is None or type(b) is pa.Buffer for b in buffers):
        raise Refused("a pyarrow array buffer that is not a buffer")
    budget.charge(sum(b.size for b in buffers if b is not None), "a pyarrow array")
    array = objects()["_restore_array"](data)
    try:  # pyarrow trusts the parts; a length beyond the buffers would read past them later
        array.validate(full=True)
    except (pa.ArrowException, ValueError) as exc:
        raise Refused(f"an inconsistent pyarrow array ({exc})") from None
    return array, False


def check_call(func: object, args: tuple[Any, ...], budget: Budget) -> Result:
    """Validate a REDUCE of ``func(*args)`` and make the call."""
    if type(func) is functools.partial:
        return call_block_partial(func, args, budget)
    role = role_of(func)
    check = CALLS.get(role) if role else None
    if check is None:
        name = func.__qualname__ if isinstance(func, type) else brief(func)
        raise Refused(f"a call to {name}, which is not an allowed constructor")
    return check(args, budget)


_NEW = ("DataFrame", "BlockManager", "ArrowStringArray", "DatetimeTZDtype", "CategoricalDtype")


def check_new(cls: object, args: tuple[Any, ...]) -> Result:
    """NEWOBJ: only these classes, only with no arguments; each then awaits its BUILD."""
    if role_of(cls) not in _NEW or args:
        raise Refused(f"NEWOBJ of {brief(cls)}")
    return cls.__new__(cls), True  # type: ignore[arg-type]


# -- BUILD ------------------------------------------------------------------------------------


def _build_ndarray(array: Any, state: object, budget: Budget) -> None:
    if type(state) is not tuple or len(state) != 5 or state[0] != 1:
        raise Refused("an ndarray state other than numpy's (1, shape, dtype, order, data)")
    _, shape, dtype, fortran, raw = state
    dims, dtype = shape_of(shape), plain_dtype(dtype)
    count = math.prod(dims)
    if type(fortran) is not bool:
        raise Refused("an ndarray state with a non-bool order flag")
    if dtype.kind == "O":
        if type(raw) is not list or len(raw) != count:
            raise Refused(f"an object array of shape {dims} without its {count} items")
        kinds = set(map(type, raw))
        if not kinds <= {*_SCALAR_NAMES, type(pd.NA)}:
            odd = next(iter(kinds - {*_SCALAR_NAMES, type(pd.NA)}))
            raise Refused(f"an object array holding a {odd.__name__} (only plain scalars)")
    elif type(raw) not in (bytes, bytearray) or len(raw) != count * dtype.itemsize:
        raise Refused(
            f"an array of shape {dims} {dtype} without its {count * dtype.itemsize} bytes"
        )
    budget.charge(count * dtype.itemsize, f"an array of shape {dims}")
    array.__setstate__(state)


def _build_dtype(dtype: np.dtype[Any], state: object) -> None:
    # the only legitimate variations are the byte order and a datetime's unit: compare the
    # state with the one numpy itself writes for that dtype (flags, sizes, fields included)
    order = state[1] if type(state) is tuple and len(state) > 1 else None
    reference, written = dtype, state
    if dtype.kind in "Mm":
        extra = state[-1] if type(state) is tuple and len(state) == 9 else None
        info = extra[1] if type(extra) is tuple and len(extra) == 2 else None
        unit = info[0] if type(info) is tuple and info else None
        if type(unit) is not bytes or unit not in UNITS:
            raise Refused(f"a datetime dtype state {brief(state)}")
        reference = np.dtype(f"{dtype.kind}8[{unit.decode()}]")
        if type(extra[0]) is dict and not extra[0]:  # type: ignore[index]
            # numpy < 2 writes empty metadata as {}, numpy 2 as None: either is numpy's own
            state = (*state[:-1], (None, info))  # type: ignore[index]
    if order in ("<", ">"):
        reference = reference.newbyteorder(order)
    if reference.__reduce__()[2] not in (state, written):
        raise Refused(f"a dtype state {brief(state)} that numpy would not write")
    dtype.__setstate__(written)  # type: ignore[attr-defined]


def _missing(item: object) -> bool:
    return item is None or (type(item) is float and math.isnan(item))


def _backed_extras(array: Any, values: object, extra: object) -> None:
    if type(extra) is not dict or not set(extra) <= {"_readonly", "_freq", "_cache"}:
        raise Refused(f"{type(array).__name__} attributes {brief(extra)}")
    cache = extra.get("_cache", {})
    timelike = type(values) is np.ndarray and values.dtype.kind in "Mm"
    unit = np.datetime_data(values.dtype)[0] if timelike else None  # type: ignore[attr-defined]
    if type(cache) is not dict or cache not in ({}, {"unit": unit}) or (not unit and cache):
        raise Refused(f"{type(array).__name__} cached attributes {brief(cache)}")
    if extra.get("_freq") is not None or type(extra.get("_readonly", False)) is not bool:
        raise Refused(f"{type(array).__name__} attributes {brief(extra)}")


def _build_backed(array: Any, state: object, budget: Budget) -> None:
    if type(state) is not tuple or len(state) not in (2, 3):
        raise Refused(f"a {type(array).__name__} state that is not (dtype, values[, attrs])")
    dtype, values = state[:2]
    _backed_extras(array, values, state[2] if len(state) == 3 else {})
    budget.charge(getattr(values, "nbytes", 0), f"a {type(array).__name__}")
    name = role_of(type(array))
    if name in ("DatetimeArray", "TimedeltaArray"):
        kind = "M" if name == "DatetimeArray" else "m"
        values = array_of(values, kind, (1, 2))
        if isinstance(dtype, pd.DatetimeTZDtype) and kind == "M":
            dtype = np.dtype(f"M8[{dtype.unit}]")
        if not isinstance(dtype, np.dtype) or dtype != values.dtype:
            raise Refused(f"a {name} of {values.dtype} values with dtype {brief(dtype)}")
        if np.datetime_data(dtype)[0] not in ("s", "ms", "us", "ns"):
            raise Refused(f"a {name} in {dtype} (pandas uses s, ms, us or ns)")
    elif name == "Categorical":
        codes = array_of(values, "i")
        if type(dtype) is not pd.CategoricalDtype or dtype.categories is None:
            raise Refused("a Categorical without a CategoricalDtype")
        if len(codes) and (codes.min() < -1 or codes.max() >= len(dtype.categories)):
            raise Refused("Categorical codes outside its categories")
    else:  # StringArray
        items = array_of(values, "O")
        if type(dtype) is not pd.StringDtype or dtype.storage != "python":
            raise Refused("a StringArray without a python StringDtype")
        na = dtype.na_value
        for item in items:
            if type(item) is not str and item is not na and not _missing(item):
                raise Refused(f"a {type(item).__name__} in a StringArray")
    array.__setstate__(state)


def _build_dict(inst: Any, state: object, allowed: dict[str, Callable[[Any], bool]]) -> None:
    required = _REQUIRED[role_of(type(inst)) or ""]
    if type(state) is not dict or not required <= set(state) <= set(allowed):
        keys = list(state) if type(state) is dict else type(state).__name__
        raise Refused(f"a {type(inst).__name__} state with keys {brief(keys)}")
    for key, ok in allowed.items():
        if key in state and not ok(state[key]):
            raise Refused(f"a {type(inst).__name__} whose {key} is a {type(state[key]).__name__}")
    inst.__setstate__(state)


def _plain_attrs(attrs: object) -> bool:
    return (
        type(attrs) is dict
        and len(attrs) <= 1000
        and all(type(k) is str and type(v) in _SCALAR_NAMES for k, v in attrs.items())
    )


_DICT_STATES: dict[str, dict[str, Callable[[Any], bool]]] = {
    "DataFrame": {
        "_mgr": lambda v: type(v) is objects()["BlockManager"],
        "_data": lambda v: type(v) is objects()["BlockManager"],  # its name before pandas 1.1
        "_typ": lambda v: v == "dataframe",
        "_metadata": lambda v: v == [],
        "attrs": _plain_attrs,
        "_flags": lambda v: (
            type(v) is dict
            and set(v) <= {"allows_duplicate_labels"}
            and all(type(flag) is bool for flag in v.values())
        ),
    },
    "ArrowStringArray": {
        "_pa_array": lambda v: type(v) in _ARROW_STRINGS,
        "_dtype": lambda v: type(v) is pd.StringDtype and v.storage == "pyarrow",
        "_cache": lambda v: v == {},
        "_readonly": lambda v: type(v) is bool,
    },
    "DatetimeTZDtype": {
        "unit": lambda v: v in ("s", "ms", "us", "ns"),
        "tz": lambda v: type(v) is datetime.timezone,
    },
    "CategoricalDtype": {
        "categories": lambda v: type(v) is pd.Index and v.is_unique,
        "ordered": lambda v: type(v) is bool,
    },
}


_REQUIRED = {
    "DataFrame": set(),  # but exactly one of _mgr, _data (check_build)
    "ArrowStringArray": {"_pa_array", "_dtype"},
    "DatetimeTZDtype": {"unit", "tz"},
    "CategoricalDtype": {"categories", "ordered"},
}


def check_build(inst: Any, state: object, budget: Budget) -> None:
    """BUILD of a freshly made object: the state must be what its library would write."""
    if type(inst) is np.ndarray:
        return _build_ndarray(inst, state, budget)
    if isinstance(inst, np.dtype):
        return _build_dtype(inst, state)
    if type(inst) is functools.partial:
        if type(state) is not tuple or len(state) != 4 or state[0] is not inst.func:
            raise Refused("a functools.partial state that changes its function")
        _, args, keywords, extra = state
        if args != () or type(keywords) is not dict or set(keywords) != {"ndim"} or extra:
            raise Refused("a functools.partial state other than (block, (), {'ndim': n}, None)")
        return inst.__setstate__(state)  # type: ignore[attr-defined,no-any-return]
    role = role_of(type(inst))
    if role == "BlockManager":
        return build_old_manager(inst, state, budget)
    if role == "DataFrame" and (type(state) is not dict or ("_mgr" in state) == ("_data" in state)):
        keys = list(state) if type(state) is dict else type(state).__name__
        raise Refused(f"a DataFrame state with keys {brief(keys)} (one of _mgr, _data is due)")
    if role in _DICT_STATES:
        _build_dict(inst, state, _DICT_STATES[role])
        # what its checks just scanned (the categories' uniqueness, an Arrow array)
        values = cast(dict[str, Any], state).values()
        scanned = [v for v in values if type(v) in (pd.Index, *_ARROW_STRINGS)]
        return budget.charge(sum(v.nbytes for v in scanned), f"a {type(inst).__name__}")
    if role in ("DatetimeArray", "TimedeltaArray", "Categorical", "StringArray"):
        return _build_backed(inst, state, budget)
    raise Refused(f"BUILD of a {type(inst).__name__}")

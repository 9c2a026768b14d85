"""What the safe unpickler (:mod:`~batchml.fraud.data.safe_pickle`) lets a pickle name, call, build.

Each name a DataFrame pickle may reference is listed as an exact ``(module, name)`` pair that maps
to a *role*; the object for a role is taken from the installed libraries themselves (a class, or
the function they pickle with, e.g. ``np.zeros(0).__reduce_ex__(4)[0]``), never resolved from
the pickle's strings. Each call the pickle makes and each state it BUILDs goes through a checker
here: exact argument types and shapes, sizes consistent with the bytes actually in the file, and
a byte budget for anything the call would allocate. A checker that says no raises
:class:`Refused` before the call.
"""

from __future__ import annotations

import codecs
import datetime
import functools
import math
import reprlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_ALLOC_PER_FILE_BYTE = 16
_ALLOC_SLACK = 64 * 1024**2
_MAX_DIM = 2**40


class Refused(Exception):
    """The pickle asks for something outside the allow-list; the message says what."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 2, 40, 40
_BRIEF.maxtuple = _BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxset = 4


def brief(value: object) -> str:
    """A short one-line repr for a message: never the whole of a big argument (it may be GBs)."""
    return " ".join(_BRIEF.repr(value).split())


class Budget:
    """Bytes a pickle's calls may still allocate or scan: a fixed multiple of the file's size.

    Every checked call and BUILD is charged the size of the arrays it makes, copies or scans,
    each time: a legitimate pickle uses each array once or twice, while one that passes a
    memoized array to a thousand calls runs out of budget instead of memory or time.
    """

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    @classmethod
    def for_file(cls, size: int) -> Budget:
        return cls(_ALLOC_PER_FILE_BYTE * size + _ALLOC_SLACK)

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise Refused(
                f"{what} would allocate {nbytes} bytes, beyond the {self.limit} bytes a pickle "
                "of this size may allocate"
            )
        self.left -= nbytes


# -- names ------------------------------------------------------------------------------------

_PD_CLASSES = {
    "DataFrame": "pandas.core.frame",
    "Index": "pandas.core.indexes.base",
    "RangeIndex": "pandas.core.indexes.range",
    "Categorical": "pandas.core.arrays.categorical",
    "CategoricalDtype": "pandas.core.dtypes.dtypes",
    "DatetimeTZDtype": "pandas.core.dtypes.dtypes",
    "StringDtype": "pandas.core.arrays.string_",
    "NA": "pandas._libs.missing",
}
_PD_ARRAYS = {
    "ArrowStringArray": "pandas.core.arrays.string_arrow",
    "StringArray": "pandas.core.arrays.string_",
    "DatetimeArray": "pandas.core.arrays.datetimes",
    "TimedeltaArray": "pandas.core.arrays.timedeltas",
}
_NUMPY_FUNCS = {"_reconstruct": "multiarray", "_frombuffer": "numeric"}

# (module, name) as written in a pickle -> role
NAMES: dict[tuple[str, str], str] = {
    **{(m, n): n for m in ("builtins", "__builtin__") for n in ("slice", "bytearray")},
    ("_codecs", "encode"): "encode",
    ("datetime", "timedelta"): "timedelta",
    ("datetime", "timezone"): "timezone",
    ("functools", "partial"): "partial",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    **{(f"numpy.{c}.{m}", f): f for f, m in _NUMPY_FUNCS.items() for c in ("core", "_core")},
    **{("pyarrow.lib", n): n for n in ("_restore_array", "py_buffer", "type_for_alias")},
    **{(m, n): n for n, m in _PD_CLASSES.items()},
    **{("pandas", n): n for n in _PD_CLASSES},
    **{(m, n): n for n, m in _PD_ARRAYS.items()},
    **{("pandas.arrays", n): n for n in _PD_ARRAYS},
    ("pandas.core.internals.managers", "BlockManager"): "BlockManager",
    ("pandas._libs.internals", "_unpickle_block"): "_unpickle_block",
    ("pandas.core.internals.blocks", "new_block"): "_unpickle_block",  # pandas <= 1.3 name
    ("pandas.core.indexes.base", "_new_Index"): "_new_Index",
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): "_unpickle_NDArrayBacked",
    # pandas 1.x index classes, folded into Index since pandas 2.0
    **{("pandas.core.indexes.numeric", n): "Index" for n in ("Int64Index", "Float64Index")},
    ("pandas.core.indexes.numeric", "UInt64Index"): "Index",
}


@functools.cache
def objects() -> dict[str, Any]:
    """role -> the object the installed libraries use for it."""
    frame = pd.DataFrame({"a": [1]})
    large = pa.array(["x"], type=pa.large_string())
    found: dict[str, Any] = {
        "slice": slice,
        "bytearray": bytearray,
        "encode": codecs.encode,
        "timedelta": datetime.timedelta,
        "timezone": datetime.timezone,
        "partial": functools.partial,
        "ndarray": np.ndarray,
        "dtype": np.dtype,
        "_reconstruct": np.zeros(0).__reduce_ex__(4)[0],
        "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
        "_restore_array": large.__reduce__()[0],
        "py_buffer": pa.py_buffer(b"x").__reduce_ex__(4)[0],
        "type_for_alias": pa.large_string().__reduce__()[0],
        "BlockManager": type(frame._mgr),
        "_unpickle_block": frame._mgr.blocks[0].__reduce__()[0],
        "_new_Index": pd.Index([1]).__reduce__()[0],
        "_unpickle_NDArrayBacked": pd.Categorical(["a"]).__reduce_ex__(4)[0],
        **{name: getattr(pd, name) for name in _PD_CLASSES},
        **{name: getattr(pd.arrays, name) for name in _PD_ARRAYS},
    }
    return found


@functools.cache
def _roles_by_id() -> dict[int, str]:
    return {id(obj): role for role, obj in objects().items()}


def lookup(module: str, name: str) -> Any:
    """The object a pickle's GLOBAL/STACK_GLOBAL names, if the exact pair is allowed."""
    if "." in name:
        raise Refused(f"the dotted name {module}.{name} (only exact module/name pairs resolve)")
    role = NAMES.get((module, name))
    if role is None:
        raise Refused(f"{module}.{name}, which is not a pandas/NumPy/pyarrow reconstructor")
    return objects()[role]


def role_of(obj: object) -> str | None:
    role = _roles_by_id().get(id(obj))
    return role if role is not None and objects()[role] is obj else None


# -- argument checks --------------------------------------------------------------------------


def integer(value: object, what: str, low: int = 0, high: int = _MAX_DIM) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Refused(f"{what} {brief(value)} (an integer from {low} to {high} was expected)")
    return value


def shape_of(value: object) -> tuple[int, ...]:
    if type(value) is not tuple or not 1 <= len(value) <= 2:
        raise Refused(f"an array shape {brief(value)}")
    return tuple(integer(n, "an array dimension") for n in value)


def array_of(value: object, kinds: str, ndims: tuple[int, ...] = (1,)) -> np.ndarray[Any, Any]:
    if type(value) is not np.ndarray or value.dtype.kind not in kinds or value.ndim not in ndims:
        raise Refused(
            f"a {type(value).__name__} where a {'/'.join(map(str, ndims))}-d array was due"
        )
    return value


def arity(args: tuple[Any, ...], count: int, what: str) -> tuple[Any, ...]:
    if len(args) != count:
        raise Refused(f"{what} called with {len(args)} arguments")
    return args


Result = tuple[Any, bool]  # the object made, and whether it awaits a BUILD
_Check = Callable[[tuple[Any, ...], Budget], Result]
CALLS: dict[str, _Check] = {}


def calls(role: str) -> Callable[[_Check], _Check]:
    def register(check: _Check) -> _Check:
        CALLS[role] = check
        return check

    return register


@calls("slice")
def _slice(args: tuple[Any, ...], budget: Budget) -> Result:
    for value in args:
        if value is not None:
            integer(value, "a slice bound", -(2**63), 2**63)
    return slice(*arity(args, 3, "slice")), False


@calls("bytearray")
def _bytearray(args: tuple[Any, ...], budget: Budget) -> Result:
    (data,) = arity(args, 1, "bytearray")
    if type(data) is not bytes:  # bytearray(n) with an int n would allocate n bytes
        raise Refused(f"bytearray of a {type(data).__name__}")
    budget.charge(len(data), "bytearray")
    return bytearray(data), False


@calls("encode")
def _encode(args: tuple[Any, ...], budget: Budget) -> Result:
    text, codec = arity(args, 2, "_codecs.encode")
    if type(text) is not str or codec != "latin1":
        raise Refused(f"_codecs.encode of a {type(text).__name__} with {brief(codec)}")
    budget.charge(len(text), "_codecs.encode")
    return codecs.encode(text, "latin1"), False


@calls("timedelta")
def _timedelta(args: tuple[Any, ...], budget: Budget) -> Result:
    days, seconds, micros = (
        integer(v, "a timedelta field", -(10**9), 10**11) for v in arity(args, 3, "timedelta")
    )
    return datetime.timedelta(days, seconds, micros), False


@calls("timezone")
def _timezone(args: tuple[Any, ...], budget: Budget) -> Result:
    if not 1 <= len(args) <= 2 or type(args[0]) is not datetime.timedelta:
        raise Refused("datetime.timezone with arguments other than (timedelta[, name])")
    if len(args) == 2 and type(args[1]) is not str:
        raise Refused("datetime.timezone with a name that is not a string")
    return datetime.timezone(*args), False


@calls("partial")
def _partial(args: tuple[Any, ...], budget: Budget) -> Result:
    (func,) = arity(args, 1, "functools.partial")
    if role_of(func) != "_unpickle_block":
        raise Refused("functools.partial of anything but pandas' block constructor")
    return functools.partial(func), True


# plain numeric, datetime and object dtypes: no structured, string or void ones
_TYPESTRS = frozenset(f"{k}{n}" for k in "iu" for n in (1, 2, 4, 8)) | {
    *("b1", "f2", "f4", "f8", "c8", "c16", "O8", "M8", "m8")
}
UNITS = frozenset(b"Y M W D h m s ms us ns ps fs as generic".split())


@calls("dtype")
def _dtype(args: tuple[Any, ...], budget: Budget) -> Result:
    typestr, align, copy = arity(args, 3, "numpy.dtype")
    if type(typestr) is not str or typestr not in _TYPESTRS:
        raise Refused(f"numpy.dtype({brief(typestr)}), not a plain numeric/datetime/object dtype")
    # numpy writes False/True; the numpy of pandas 1.0's time wrote 0/1
    if type(align) not in (bool, int) or align != 0:
        raise Refused(f"numpy.dtype with align={brief(align)}")
    if type(copy) not in (bool, int) or copy not in (0, 1):
        raise Refused(f"numpy.dtype with copy={brief(copy)}")
    return np.dtype(typestr, align=False, copy=bool(copy)), True


@calls("_reconstruct")
def _reconstruct(args: tuple[Any, ...], budget: Budget) -> Result:
    # numpy always pickles an empty stub, ndarray.__setstate__ (BUILD) then sizes it
    cls, shape, code = arity(args, 3, "numpy _reconstruct")
    if cls is not np.ndarray or type(shape) is not tuple or shape != (0,) or code != b"b":
        raise Refused(f"numpy _reconstruct{brief(args)} (only an empty ndarray stub is made)")
    return np.ndarray((0,), "b"), True


def plain_dtype(value: object) -> np.dtype[Any]:
    if not isinstance(value, np.dtype) or value.fields is not None or value.subdtype is not None:
        raise Refused(f"an array dtype {brief(value)}")
    if f"{value.kind}{value.itemsize}" not in _TYPESTRS and value.kind not in "Mm":
        raise Refused(f"an array dtype {brief(value)}")
    return value


@calls("_frombuffer")
def _frombuffer(args: tuple[Any, ...], budget: Budget) -> Result:
    buf, dtype, shape, order = arity(args, 4, "numpy _frombuffer")
    dtype = plain_dtype(dtype)
    dims = shape_of(shape)
    if type(buf) not in (bytes, bytearray) or dtype.kind == "O" or order not in ("C", "F"):
        raise Refused(f"numpy _frombuffer of a {type(buf).__name__} as {dtype}")
    nbytes = math.prod(dims) * dtype.itemsize
    if len(buf) != nbytes:
        raise Refused(f"numpy _frombuffer of {len(buf)} bytes as shape {dims} ({nbytes} bytes)")
    budget.charge(nbytes, f"an array of shape {dims}")
    return objects()["_frombuffer"](buf, dtype, dims, order), False

"""Loading pickled DataFrames without letting a pickle run code.

The frames accepted hold plain columns, in the layouts tests/fraud/test_safe_pickle.py reads:
today's pandas, the tutorial's files, and the Fraud Detection Handbook's published daily files
(pandas 1.0's layout, described in :mod:`batchml.fraud.data.pickle_blocks`).

Pickles are accepted only at import time, from a local path the user names, with an explicit
``--trust-pickle`` (docs/design.md). Even then the file is read by an unpickler that is deliberately
much narrower than :mod:`pickle`:

* Only the opcodes a protocol 2-5 DataFrame pickle uses are executed; any other one (``INST``,
  ``OBJ``, ``EXT*``, persistent ids, out-of-band buffers, protocol 0/1 text opcodes ...) is
  refused by name before it runs.
* A name in the pickle is looked up as an exact ``(module, name)`` pair in a fixed table
  (:mod:`batchml.fraud.data.pickle_allowlist`) whose objects come from the installed pandas, NumPy
  and pyarrow; nothing is imported or resolved from the pickle's strings, so a dotted name
  (``numpy.dtypes.__builtins__.get``) or any other pair is refused.
* Every call the pickle asks for (``REDUCE``/``NEWOBJ``) and every ``BUILD`` goes through a
  checker (:mod:`batchml.fraud.data.pickle_checks`) that validates the arguments' types, shapes and
  sizes before anything is called; only a freshly made object can be BUILT, and it cannot be
  used before that. The bytes each checked call allocates, copies or scans (arrays, byte
  strings, the rows of a RangeIndex) are charged, every time, to a budget of 16 times the
  file's size plus 64 MiB, so a tiny pickle cannot ask for gigabytes, nor reuse one array
  from the memo in a million calls. The opcodes themselves copy nothing, so they allocate at most a
  small constant per byte of the file. Files above ``max_bytes`` (1 GiB by default) are not read.

Anything refused, and anything unreadable, is a :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pandas as pd

from batchml.errors import DatasetError
from batchml.fraud.data import pickle_allowlist as allow
from batchml.fraud.data import pickle_checks as checks
from batchml.fraud.data.pickle_allowlist import Refused

MAX_PICKLE_BYTES = 1024**3
"""Pickles larger than this are refused unread (a tutorial day is 0.6 MB, a year 220 MB)."""

_OPNAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}

# The opcodes a DataFrame pickle of protocol 2-5 is made of; pickle's own implementation of each
# is used, except for the ones _SafeUnpickler overrides below.
_PLAIN_OPCODES = (
    *("FRAME", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "BINFLOAT"),
    *("BININT", "BININT1", "BININT2", "LONG1", "LONG4"),
    *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"),
    *("SHORT_BINBYTES", "BINBYTES", "BINBYTES8"),
    *("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "MEMOIZE", "BINPUT", "LONG_BINPUT"),
    *("GLOBAL", "STACK_GLOBAL"),
)


def _opcode(name: str) -> int:
    return getattr(pickle, name)[0]  # type: ignore[no-any-return]


class _Dispatch(dict[int, Callable[[Any], None]]):
    def __missing__(self, code: int) -> NoReturn:
        name = _OPNAMES.get(code, f"byte {code:#04x}")
        raise Refused(f"opcode {name}, which a plain DataFrame pickle does not use")


class _SafeUnpickler(pickle._Unpickler):
    """pickle's pure-Python unpickler with a closed opcode set and checked calls."""

    # set up by pickle._Unpickler.load(), declared for the type checker
    stack: list[Any]
    memo: dict[int, Any]
    proto: int
    read: Callable[[int], bytes]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, data: bytes, budget: allow.Budget) -> None:
        super().__init__(io.BytesIO(data))
        self.size = len(data)
        self.budget = budget
        # objects made by a call that still await their BUILD, by id (the value keeps them alive)
        self.pending: dict[int, object] = {}

    def find_class(self, module: str, name: str) -> Any:
        return allow.lookup(module, name)

    # -- helpers -----------------------------------------------------------------------------

    def _packed(self, items: list[Any] | tuple[Any, ...]) -> None:
        for item in items:
            if id(item) in self.pending:
                raise Refused(f"use of a {type(item).__name__} before its BUILD")

    def _made(self, obj: object, awaits_build: bool) -> object:
        if awaits_build:
            self.pending[id(obj)] = obj
        return obj

    # -- overridden opcodes ------------------------------------------------------------------

    def load_proto(self) -> None:
        proto = self.read(1)[0]
        if not 2 <= proto <= 5:
            raise Refused(f"pickle protocol {proto} (only protocols 2 to 5 are read)")
        self.proto = proto

    def load_bytearray8(self) -> None:
        # pickle's own version makes bytearray(n) before reading the n bytes: check n first
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self.size:
            raise Refused(f"a BYTEARRAY8 of {size} bytes in a file of {self.size} bytes")
        self.budget.charge(size, "a BYTEARRAY8")
        data = self.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))

    def load_tuple(self) -> None:
        items = self.pop_mark()
        self._packed(items)
        self.append(tuple(items))

    def load_tuple1(self) -> None:
        self._packed(self.stack[-1:])
        self.stack[-1] = (self.stack[-1],)

    def load_tuple2(self) -> None:
        self._packed(self.stack[-2:])
        self.stack[-2:] = [(self.stack[-2], self.stack[-1])]

    def load_tuple3(self) -> None:
        self._packed(self.stack[-3:])
        self.stack[-3:] = [(self.stack[-3], self.stack[-2], self.stack[-1])]

    def load_append(self) -> None:
        value = self.stack.pop()
        self._extend([value])

    def load_appends(self) -> None:
        self._extend(self.pop_mark())

    def _extend(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) is not list:
            raise Refused(f"APPEND to a {type(target).__name__}")
        self._packed(items)
        target.extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._update([key, value])

    def load_setitems(self) -> None:
        self._update(self.pop_mark())

    def _update(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) is not dict:
            raise Refused(f"SETITEM on a {type(target).__name__}")
        self._packed(items)
        for i in range(0, len(items) - 1, 2):
            key = items[i]
            if type(key) not in (str, int, bool, float, type(None)):
                raise Refused(f"a dict key of type {type(key).__name__}")
            target[key] = items[i + 1]

    def _get(self, index: int) -> None:
        try:
            value = self.memo[index]
        except KeyError:
            raise pickle.UnpicklingError(f"memo value not found at index {index}") from None
        self._packed([value])
        self.append(value)

    def load_binget(self) -> None:
        self._get(self.read(1)[0])

    def load_long_binget(self) -> None:
        self._get(int.from_bytes(self.read(4), "little"))

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._packed([func, args])
        if type(args) is not tuple:
            raise Refused(f"a call with arguments of type {type(args).__name__}")
        self.stack[-1] = self._made(*checks.check_call(func, args, self.budget))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._packed([cls, args])
        if type(args) is not tuple:
            raise Refused(f"NEWOBJ with arguments of type {type(args).__name__}")
        self.append(self._made(*checks.check_new(cls, args)))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        self._packed([state])
        if self.pending.pop(id(inst), None) is not inst:
            raise Refused(f"BUILD on a {type(inst).__name__} that is not freshly made")
        checks.check_build(inst, state, self.budget)

    def load_stop(self) -> None:
        value = self.stack.pop()
        if id(value) in self.pending:
            raise Refused(f"a {type(value).__name__} that was never built")
        raise pickle._Stop(value)  # type: ignore[attr-defined]

    _OVERRIDES: ClassVar[dict[str, Callable[[Any], None]]] = {
        "PROTO": load_proto,
        "BYTEARRAY8": load_bytearray8,
        "TUPLE": load_tuple,
        "TUPLE1": load_tuple1,
        "TUPLE2": load_tuple2,
        "TUPLE3": load_tuple3,
        "APPEND": load_append,
        "APPENDS": load_appends,
        "SETITEM": load_setitem,
        "SETITEMS": load_setitems,
        "BINGET": load_binget,
        "LONG_BINGET": load_long_binget,
        "REDUCE": load_reduce,
        "NEWOBJ": load_newobj,
        "BUILD": load_build,
        "STOP": load_stop,
    }
    dispatch = _Dispatch(
        {_opcode(name): pickle._Unpickler.dispatch[_opcode(name)] for name in _PLAIN_OPCODES}
        | {_opcode(name): method for name, method in _OVERRIDES.items()}
    )


def loads(data: bytes) -> Any:
    """Unpickle ``data`` with the allow-list; raises :class:`Refused` or pickle's own errors."""
    if not data.startswith(b"\x80"):
        raise Refused("a pickle of protocol 0 or 1 (only protocols 2 to 5 are read)")
    return _SafeUnpickler(data, allow.Budget.for_file(len(data))).load()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CONVERT = (
    "only plain pandas DataFrames are accepted; convert the file to Parquet with a trusted "
    "pandas (df.to_parquet) and import that"
)


def _read_capped(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            # read(n) reserves n bytes up front: ask for what the file holds, not for the cap
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(min(size, max_bytes) + 1)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({_one_line(exc)})") from None
    if len(data) > max_bytes:
        raise DatasetError(
            f"{path}: refused to unpickle: the file is larger than the {max_bytes}-byte limit "
            f"for pickles; {_CONVERT}"
        )
    return data


def read_pickled_frame(path: Path, *, max_bytes: int = MAX_PICKLE_BYTES) -> pd.DataFrame:
    """Read a pickled pandas DataFrame that the user explicitly trusted, with the allow-list.

    Raises :class:`DatasetError` (naming the file) for a file that is too large, a pickle that
    asks for anything outside the allow-list, and anything unreadable; never another exception.
    """
    data = _read_capped(path, max_bytes)
    try:
        obj = loads(data)
    except Refused as exc:
        raise DatasetError(f"{path}: refused to unpickle: {exc}; {_CONVERT}") from None
    except Exception as exc:  # the file is untrusted bytes: any failure is "unreadable"
        raise DatasetError(
            f"{path}: not a readable pickled DataFrame ({_one_line(exc)}); {_CONVERT}"
        ) from None
    if type(obj) is not pd.DataFrame:
        raise DatasetError(f"{path}: the pickle holds a {type(obj).__name__}; {_CONVERT}")
    return obj

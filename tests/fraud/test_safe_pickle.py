"""The --trust-pickle unpickler: hand-made attacks at opcode level, bombs, and a fuzzer.

Every code-execution attack names a marker file that its payload would create; the marker must
never appear. The pickles are written byte by byte, as an attacker would, not with pickle.dumps.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.compat import pickle_compat

from batchml.errors import DatasetError, UntrustedPickleError
from batchml.fraud.data import datasets
from batchml.fraud.data.safe_pickle import read_pickled_frame
from batchml.fraud.data.schema import normalize
from batchml.storage import Storage
from tests.fraud.test_datasets import frame as tutorial_frame

TUTORIAL = Path(__file__).parents[1] / "data" / "tutorial-datasets"
SHARED_TUTORIAL = Path("/work/shared/tutorial-datasets")
REPO = Path(__file__).resolve().parents[2]


# -- a tiny pickle assembler -----------------------------------------------------------------


def proto(n: int = 4) -> bytes:
    return pickle.PROTO + bytes([n])


def text(value: str) -> bytes:
    data = value.encode()
    if len(data) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    data = pickle.encode_long(value)
    return pickle.LONG1 + bytes([len(data)]) + data


def stack_global(module: str, name: str) -> bytes:
    return text(module) + text(name) + pickle.STACK_GLOBAL


def global_op(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def call1(arg: bytes) -> bytes:
    """Call what is on the stack with one argument."""
    return arg + pickle.TUPLE1 + pickle.REDUCE


def get(index: int) -> bytes:
    return pickle.BINGET + bytes([index])


def shell(marker: Path) -> str:
    return f"touch {marker}"


def evil_eval(marker: Path, reach_get: bytes) -> bytes:
    """``reach_get`` pushes builtins' dict.get; then get('eval')(<code that touches marker>)."""
    code = f"__import__('os').system({shell(marker)!r})"
    return proto() + reach_get + call1(text("eval")) + call1(text(code)) + pickle.STOP


def evil_system(marker: Path) -> bytes:
    """builtins.get, memoized and re-fetched: getattr(__import__('os'), 'system')('touch ...')."""
    get_builtin = stack_global("numpy.dtypes", "__builtins__.get") + pickle.MEMOIZE  # memo 0
    getattr_ = get(0) + call1(text("getattr"))
    os_module = get(0) + call1(text("__import__")) + call1(text("os"))
    system = getattr_ + os_module + text("system") + pickle.TUPLE2 + pickle.REDUCE
    return proto() + get_builtin + pickle.POP + system + call1(text(shell(marker))) + pickle.STOP


def write(tmp_path: Path, data: bytes, name: str = "evil.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(DatasetError) as info:
        read_pickled_frame(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- code execution attacks ------------------------------------------------------------------

DOTTED = stack_global("numpy.dtypes", "__builtins__.get")
RECONSTRUCT = stack_global("numpy._core.multiarray", "_reconstruct")
STUB = RECONSTRUCT + stack_global("numpy", "ndarray") + integer(0) + pickle.TUPLE1
STUB += b"C\x01b" + pickle.TUPLE3 + pickle.REDUCE  # numpy's empty-array stub
F8 = stack_global("numpy", "dtype") + text("f8") + pickle.NEWFALSE + pickle.NEWTRUE
F8 += pickle.TUPLE3 + pickle.REDUCE
F8 += pickle.MARK + integer(3) + text("<") + pickle.NONE * 3 + integer(-1) * 2 + integer(0)
F8 += pickle.TUPLE + pickle.BUILD  # numpy.dtype('f8') with the state numpy writes


def range_index(stop: int) -> bytes:
    data = stack_global("pandas.core.indexes.base", "_new_Index")
    data += stack_global("pandas", "RangeIndex") + pickle.EMPTY_DICT + pickle.MARK
    data += text("start") + integer(0) + text("stop") + integer(stop) + pickle.SETITEMS
    return data + pickle.TUPLE2 + pickle.REDUCE


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("dotted STACK_GLOBAL to builtins via a module's globals", lambda m: evil_eval(m, DOTTED)),
        ("memoized callable reused for getattr/__import__/os.system", evil_system),
        (
            "GLOBAL opcode with a dotted name under protocol 4",
            lambda m: evil_eval(m, global_op("numpy.dtypes", "__builtins__.get")),
        ),
        (
            "GLOBAL opcode with a dotted name under protocol 2",
            lambda m: evil_eval(m, global_op("numpy.dtypes", "__builtins__.get")).replace(
                proto(4), proto(2), 1
            ),
        ),
        (
            "protocol 0 GLOBAL",
            lambda m: evil_eval(m, global_op("numpy.dtypes", "__builtins__.get"))[2:],
        ),
        (
            "dotted name starting in an exactly allowed pandas name",
            lambda m: evil_eval(m, stack_global("pandas", "DataFrame.__init__.__globals__.get")),
        ),
    ],
)
def test_code_execution_attacks_are_refused_before_running(
    tmp_path: Path, name: str, payload: object
) -> None:
    marker = tmp_path / "code-ran"
    path = write(tmp_path, payload(marker))  # type: ignore[operator]
    message = refused(path, "refused to unpickle", "Parquet")
    assert not marker.exists(), name
    assert "__builtins__" in message or "protocol 0" in message or "__globals__" in message


def test_attack_through_the_real_cli_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    folder = tmp_path / "in"
    folder.mkdir()
    bad = write(folder, evil_system(marker), "2018-04-01.pkl")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchml",
            "--root",
            str(tmp_path / "root"),
            "data",
            "import",
            str(folder),
            "--trust-pickle",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert str(bad) in lines[0] and "refused to unpickle" in lines[0] and "Parquet" in lines[0]
    assert "Traceback" not in run.stderr
    assert not marker.exists()


def test_numpy_dtypes_names_are_exact_too(tmp_path: Path) -> None:
    # the old allow-list took anything under numpy.dtypes, e.g. its module helper
    data = proto() + stack_global("numpy.dtypes", "_add_dtype_helper") + pickle.STOP
    refused(write(tmp_path, data), "numpy.dtypes._add_dtype_helper")
    data = proto() + stack_global("numpy.dtypes", "Float64DType") + pickle.STOP
    refused(write(tmp_path, data), "numpy.dtypes.Float64DType")


def test_each_allowed_name_is_the_object_its_library_has_there() -> None:
    # the unpickler never resolves a pickle's strings; this checks its fixed table against
    # the installed libraries: where the pair exists, it is the very object the role stands for
    import importlib
    import warnings

    from batchml.fraud.data.pickle_allowlist import NAMES, objects

    renamed = {("pandas.core.internals.blocks", "new_block")}  # pandas <= 1.3's block maker
    checked = 0
    for (module, name), role in NAMES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy.core is deprecated
            try:
                found = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue  # a name only older pandas/numpy had (Int64Index, numpy.core ...)
        if (module, name) not in renamed:
            assert found is objects()[role], (module, name)
            checked += 1
    assert checked >= 40


def test_names_are_never_imported(tmp_path: Path) -> None:
    assert "this" not in sys.modules  # importing it prints the Zen of Python
    refused(write(tmp_path, proto() + stack_global("this", "s") + pickle.STOP), "this.s")
    assert "this" not in sys.modules


def test_pandas_compat_map_entries_do_not_redirect_outside_the_list(tmp_path: Path) -> None:
    from batchml.fraud.data import pickle_allowlist

    for (module, name), target in pickle_compat._class_locations_map.items():
        role = pickle_allowlist.NAMES.get((module, name))
        if role is None:  # e.g. SparseDtype, NaT's unpickler: refused by name
            data = proto() + stack_global(module, name) + pickle.STOP
            refused(write(tmp_path, data), f"{module}.{name}")
        else:  # the few pandas renames we follow land on the object pandas itself maps to
            moved = getattr(__import__(target[0], fromlist=[target[1]]), target[1])
            assert pickle_allowlist.objects()[role] is moved


def test_the_class_of_an_allowed_object_is_not_callable_through_reduce(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    # numpy.ndarray is allowed as an argument of _reconstruct, never as a callable
    data = proto() + stack_global("numpy", "ndarray") + call1(integer(2**36)) + pickle.STOP
    refused(write(tmp_path, data), "ndarray")
    # a callable made by an allowed call (slice) cannot be called either
    nested = proto() + stack_global("builtins", "slice")
    nested += text("x") + integer(1) + pickle.NONE + pickle.TUPLE3 + pickle.REDUCE
    nested += call1(text(shell(marker))) + pickle.STOP
    refused(write(tmp_path, nested), "slice")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("opcode", "data"),
    [
        ("INST", pickle.MARK + pickle.INST + b"os\nsystem\n"),
        ("OBJ", pickle.MARK + stack_global("pandas", "DataFrame") + pickle.OBJ),
        ("EXT1", pickle.EXT1 + b"\x01"),
        ("EXT2", pickle.EXT2 + b"\x01\x00"),
        ("EXT4", pickle.EXT4 + b"\x01\x00\x00\x00"),
        ("BINPERSID", text("x") + pickle.BINPERSID),
        ("PERSID", pickle.PERSID + b"x\n"),
        ("NEXT_BUFFER", pickle.NEXT_BUFFER),
        ("NEWOBJ_EX", stack_global("pandas", "DataFrame") + b")}" + pickle.NEWOBJ_EX),
        ("DUP", pickle.NONE + pickle.DUP),
    ],
)
def test_opcodes_a_frame_does_not_need_are_refused_by_name(
    tmp_path: Path, opcode: str, data: bytes
) -> None:
    refused(write(tmp_path, proto() + data + pickle.STOP), f"opcode {opcode}")


def test_build_on_anything_but_a_fresh_allowed_object_is_refused(tmp_path: Path) -> None:
    # BUILD on a dict-backed object to plant an attribute: refused
    slice_ = stack_global("builtins", "slice") + pickle.NONE * 3 + pickle.TUPLE3 + pickle.REDUCE
    data = proto() + slice_ + pickle.EMPTY_DICT + pickle.BUILD + pickle.STOP
    refused(write(tmp_path, data), "BUILD on a slice")
    # an empty ndarray stub fetched back from the memo before its BUILD (memo trick): pandas
    # would hold a 0-length array that a later BUILD resizes under it
    data = proto() + STUB + pickle.MEMOIZE + get(0) + pickle.STOP
    refused(write(tmp_path, data), "ndarray before its BUILD")
    # ... or packed into a block's arguments before its BUILD
    data = proto() + STUB + pickle.TUPLE1 + pickle.STOP
    refused(write(tmp_path, data), "ndarray before its BUILD")


def test_a_real_frame_pickle_patched_to_bad_category_codes_is_refused(tmp_path: Path) -> None:
    # the old allow-list returned this frame; its codes point past its 2 categories
    data = pickle.dumps(pd.DataFrame({"c": pd.Categorical(["a", "b"] * 4)}), protocol=4)
    assert data.count(b"\x00\x01" * 4) == 1
    path = write(tmp_path, data.replace(b"\x00\x01" * 4, b"\x00\x7f" * 4))
    refused(path, "Categorical codes outside its categories")


class _Forged:
    """Pickles as whatever reduce value it is given: real names, forged arguments."""

    def __init__(self, *reduce_value: object) -> None:
        self.reduce_value = reduce_value

    def __reduce__(self) -> tuple[object, ...]:
        return self.reduce_value


def _forged(*reduce_value: object) -> bytes:
    return pickle.dumps(_Forged(*reduce_value), protocol=4)


def test_allowed_constructors_with_inconsistent_arguments_are_refused(tmp_path: Path) -> None:
    """The shapes pandas/pyarrow trust in their own pickles, which would read out of bounds."""
    from batchml.fraud.data.pickle_allowlist import objects

    backed, block = objects()["_unpickle_NDArrayBacked"], objects()["_unpickle_block"]
    checksum = pd.Categorical(["a"]).__reduce_ex__(4)[1][1]
    codes = np.array([0, 7], dtype="int8")
    categorical = (
        backed,
        (pd.Categorical, checksum, None),
        (pd.CategoricalDtype(["a", "b"]), codes),
    )
    bad_place = _Forged(block, (np.zeros((1, 3)), np.array([5]), 2))
    manager = (objects()["BlockManager"], ((bad_place,), [pd.Index(["a"]), pd.RangeIndex(3)]))
    offsets = pa.py_buffer(np.array([0, 1], dtype="int64").tobytes())
    arrow = (pa.large_string(), 1000, 0, 0, [None, offsets, pa.py_buffer(b"x")], [], None)
    flags = (np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))
    years = np.array([1, 2], dtype="M8[Y]")
    dates = (backed, (pd.arrays.DatetimeArray, checksum, None), (years.dtype, years))
    for reduce_value, message in [
        (categorical, "Categorical codes outside its categories"),
        (manager, "blocks that do not cover the frame's columns exactly once"),
        ((objects()["_restore_array"], (arrow,)), "an inconsistent pyarrow array"),
        (flags, "that numpy would not write"),
        (dates, "pandas uses s, ms, us or ns"),
    ]:
        refused(write(tmp_path, _forged(*reduce_value)), message)


# -- allocation bombs ------------------------------------------------------------------------

GIB = 1024**3
BOMBS = {
    "bytearray(n)": stack_global("builtins", "bytearray") + call1(integer(8 * GIB)),
    "_reconstruct of a huge shape": RECONSTRUCT
    + stack_global("numpy", "ndarray")
    + integer(8 * GIB)
    + pickle.TUPLE1
    + b"C\x01b"
    + pickle.TUPLE3
    + pickle.REDUCE,
    "numpy.ndarray(n)": stack_global("numpy", "ndarray") + call1(integer(8 * GIB)),
    "BINBYTES8 longer than the file": pickle.BINBYTES8 + struct.pack("<Q", 64 * GIB),
    "BYTEARRAY8 longer than the file": pickle.BYTEARRAY8 + struct.pack("<Q", 8 * GIB),
    "BINUNICODE8 longer than the file": pickle.BINUNICODE8 + struct.pack("<Q", 8 * GIB),
    "FRAME longer than the file": pickle.FRAME + struct.pack("<Q", 8 * GIB) + pickle.NONE,
    # a refusal that quoted its argument in full: 3000 references to one 1 MB string
    "an error message quoting a huge argument": RECONSTRUCT
    + stack_global("numpy", "ndarray")
    + pickle.MARK
    + text("x" * 2**20)
    + pickle.MEMOIZE
    + get(0) * 3000
    + pickle.TUPLE
    + b"C\x01b"
    + pickle.TUPLE3
    + pickle.REDUCE,
    "RangeIndex far beyond the file": range_index(2**40),
    "_frombuffer shape larger than its data": stack_global("numpy._core.numeric", "_frombuffer")
    + pickle.MARK
    + b"C\x08"
    + b"\x00" * 8
    + F8
    + integer(2**30)
    + pickle.TUPLE1
    + text("C")
    + pickle.TUPLE
    + pickle.REDUCE,
    "an ndarray BUILD claiming more bytes than it carries": STUB
    + pickle.MARK
    + integer(1)
    + integer(2**30)
    + pickle.TUPLE1
    + F8
    + pickle.NEWFALSE
    + pickle.BINBYTES8
    + struct.pack("<Q", 8 * GIB),
}


def _read_with_capped_memory(paths: list[Path]) -> list[str]:
    """Read each file in a child whose address space is capped 1 GiB above its needs.

    A real allocation of the size a bomb asks for would fail there with MemoryError; the child
    says, one line per file, whether it REFUSED, ALLOCATED (tried to) or LOADED it.
    """
    child = textwrap.dedent(
        """
        import resource, sys
        from pathlib import Path
        from batchml.errors import DatasetError
        from batchml.fraud.data.safe_pickle import read_pickled_frame
        # warm up first (imports, the allow-list's objects, pyarrow's allocator): the cap is
        # then 1 GiB above what a real load needs, far below what the bombs ask for
        read_pickled_frame(Path(sys.argv[1]))
        size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))
        for name in sys.argv[2:]:
            try:
                read_pickled_frame(Path(name))
            except DatasetError as exc:  # MemoryError means it did try to allocate
                print("ALLOCATED" if "MemoryError" in str(exc) else "REFUSED", exc)
            else:
                print("LOADED", name)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", child, str(TUTORIAL / "training" / "2018-04-01.pkl")]
        + [str(path) for path in paths],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == len(paths), lines
    for line, path in zip(lines, paths, strict=True):
        assert line.startswith("REFUSED") and str(path) in line, line
    return lines


def test_tiny_pickles_asking_for_gigabytes_are_refused_unallocated(tmp_path: Path) -> None:
    paths = {
        name: write(tmp_path, proto() + data + pickle.STOP, f"bomb{i}.pkl")
        for i, (name, data) in enumerate(BOMBS.items())
    }
    for name, path in paths.items():  # tiny, but for the one carrying a 1 MB string
        assert path.stat().st_size < (2**21 if "huge argument" in name else 300)
    _read_with_capped_memory(list(paths.values()))


def test_the_budget_is_a_multiple_of_the_file_size(tmp_path: Path) -> None:
    # a lazy RangeIndex costs nothing to make but 8 bytes a row once used: it is charged
    small = write(tmp_path, proto() + range_index(10**6) + pickle.STOP, "small.pkl")
    refused(small, "holds a RangeIndex")  # within budget: made, then refused as not a frame
    big = write(tmp_path, proto() + range_index(9 * 10**6) + pickle.STOP, "big.pkl")
    refused(big, "a RangeIndex would allocate 72000000 bytes, beyond the")


def test_one_memoized_array_fed_to_many_calls_runs_out_of_budget(tmp_path: Path) -> None:
    # pandas copies an Index's data: 200 indexes over one memoized 1 MiB array would be
    # 200 MiB from a 1 MiB file; each use is charged, so the budget stops it
    array = stack_global("numpy._core.numeric", "_frombuffer") + pickle.MARK
    array += pickle.BINBYTES + struct.pack("<I", 2**20) + b"\x00" * 2**20
    array += F8 + integer(2**17) + pickle.TUPLE1 + text("C") + pickle.TUPLE + pickle.REDUCE

    def index(func: bytes, cls: bytes, data: bytes) -> bytes:
        state = pickle.EMPTY_DICT + pickle.MARK + text("data") + data + text("name")
        return func + cls + state + pickle.NONE + pickle.SETITEMS + pickle.TUPLE2 + pickle.REDUCE

    first = index(
        stack_global("pandas.core.indexes.base", "_new_Index") + pickle.MEMOIZE,
        stack_global("pandas", "Index") + pickle.MEMOIZE,
        array + pickle.MEMOIZE,
    )
    again = index(get(0), get(1), get(2))
    body = pickle.EMPTY_LIST + pickle.MARK + first + again * 199 + pickle.APPENDS
    refused(write(tmp_path, proto() + body + pickle.STOP), "an Index would allocate")
    few = pickle.EMPTY_LIST + pickle.MARK + first + again * 3 + pickle.APPENDS
    refused(write(tmp_path, proto() + few + pickle.STOP), "holds a list")


def test_files_above_the_cap_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "2018-04-01.pkl"
    pd.DataFrame({"a": np.arange(1000)}).to_pickle(path)
    with pytest.raises(DatasetError, match=r"larger than the 100-byte limit.*Parquet"):
        read_pickled_frame(path, max_bytes=100)
    assert len(read_pickled_frame(path, max_bytes=path.stat().st_size)) == 1000


# -- what must still load --------------------------------------------------------------------


@pytest.mark.parametrize("folder", [TUTORIAL, SHARED_TUTORIAL], ids=["repo copy", "shared"])
def test_tutorial_pickles_load_as_pandas_reads_them(folder: Path) -> None:
    files = sorted(folder.rglob("*.pkl"))
    if not files:
        pytest.skip(f"{folder} is not on this machine")
    for path in files:
        pd.testing.assert_frame_equal(read_pickled_frame(path), pd.read_pickle(path))


def _every_column_type(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.arange(n),
            "i32": np.arange(n, dtype="int32"),
            "u8": np.arange(n, dtype="uint8"),
            "f": np.linspace(0, 1, n),
            "f4": np.ones(n, "float32"),
            "b": [True, False] * (n // 2),
            "dt": pd.date_range("2018-04-01", periods=n, freq="h"),
            "dt_ns": pd.date_range("2018-04-01", periods=n, freq="h").astype("datetime64[ns]"),
            "dt_utc": pd.date_range("2018-04-01", periods=n, freq="h", tz="UTC"),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
            "cat": pd.Categorical(list("abcabc")[:n]),
            "s": list("xyzxyz")[:n],
            "s_missing": ["x", None, "y", "z", "w", "v"][:n],
            "obj": pd.Series(list("xyzxyz")[:n], dtype=object),
            "s_python": pd.array(["x", None, "y", "z", "w", "v"][:n], dtype="string[python]"),
            "s_arrow": pd.array(["x", None, "y", "z", "w", "v"][:n], dtype="string[pyarrow]"),
        }
    )


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_frames_of_every_plain_column_type_load_at_protocols_2_to_5(
    tmp_path: Path, protocol: int
) -> None:
    frame = _every_column_type()
    path = write(tmp_path, pickle.dumps(frame, protocol=protocol), "frame.pkl")
    pd.testing.assert_frame_equal(read_pickled_frame(path), frame)
    indexed = frame.set_index("i")
    path.write_bytes(pickle.dumps(indexed, protocol=protocol))
    pd.testing.assert_frame_equal(read_pickled_frame(path), indexed)


# -- pandas 1.0's layout: the Fraud Detection Handbook's own daily files ---------------------
#
# A frame pickled by pandas 1.0 is DataFrame() and BlockManager() by NEWOBJ, the manager's
# BUILD state (axes, values, items, {"0.14.1": {"axes": axes, "blocks": [...]}}), the frame's
# state naming it _data, and numpy's dtypes called with 0/1 flags. OLD is such a pickle, written
# here opcode by opcode, with the handbook's columns and block layout over 3 rows.

OLD_NUMPY = "numpy.core.multiarray"  # where the numpy of that time kept _reconstruct
ID_COLUMNS = ["CUSTOMER_ID", "TERMINAL_ID", "TX_TIME_SECONDS", "TX_TIME_DAYS"]


def short_bytes(data: bytes) -> bytes:
    return pickle.SHORT_BINBYTES + bytes([len(data)]) + data


def put(index: int) -> bytes:
    return pickle.BINPUT + bytes([index])


def old_dtype(typestr: str, metadata: bytes = pickle.EMPTY_DICT) -> bytes:
    """numpy.dtype(typestr, 0, 1) and the state that numpy wrote for it."""
    flags = 63 if typestr == "O8" else 0
    state = integer(4 if typestr == "M8" else 3) + text("|" if typestr == "O8" else "<")
    state += pickle.NONE * 3 + integer(-1) * 2 + integer(flags)
    if typestr == "M8":
        unit = pickle.MARK + short_bytes(b"ns") + integer(1) * 3 + pickle.TUPLE
        state += metadata + unit + pickle.TUPLE2
    call = stack_global("numpy", "dtype") + text(typestr) + integer(0) + integer(1)
    return call + pickle.TUPLE3 + pickle.REDUCE + pickle.MARK + state + pickle.TUPLE + pickle.BUILD


def old_array(shape: tuple[int, ...], dtype: bytes, data: bytes) -> bytes:
    """numpy's empty stub, then its BUILD (1, shape, dtype, False, data)."""
    stub = stack_global(OLD_NUMPY, "_reconstruct") + stack_global("numpy", "ndarray")
    stub += integer(0) + pickle.TUPLE1 + short_bytes(b"b") + pickle.TUPLE3 + pickle.REDUCE
    dims = b"".join(map(integer, shape)) + (pickle.TUPLE1, pickle.TUPLE2)[len(shape) - 1]
    state = integer(1) + dims + dtype + pickle.NEWFALSE + data
    return stub + pickle.MARK + state + pickle.TUPLE + pickle.BUILD


def raw(values: np.ndarray) -> bytes:
    data = np.ascontiguousarray(values).tobytes()
    return pickle.BINBYTES + struct.pack("<I", len(data)) + data


def items(fragments: list[bytes]) -> bytes:
    return pickle.EMPTY_LIST + pickle.MARK + b"".join(fragments) + pickle.APPENDS


def old_index(name: str, data: bytes) -> bytes:
    module = "pandas.core.indexes.numeric" if name == "Int64Index" else "pandas.core.indexes.base"
    state = pickle.EMPTY_DICT + pickle.MARK + text("data") + data + text("name") + pickle.NONE
    call = stack_global("pandas.core.indexes.base", "_new_Index") + stack_global(module, name)
    return call + state + pickle.SETITEMS + pickle.TUPLE2 + pickle.REDUCE


def labels(names: list[str]) -> bytes:
    return old_index(
        "Index", old_array((len(names),), old_dtype("O8"), items(list(map(text, names))))
    )


def slice_of(start: int, stop: int) -> bytes:
    bounds = integer(start) + integer(stop) + integer(1) + pickle.TUPLE3
    return stack_global("builtins", "slice") + bounds + pickle.REDUCE


def locs(columns: list[int]) -> bytes:
    return old_array((len(columns),), old_dtype("i8"), raw(np.array(columns, dtype="int64")))


def old_expected() -> pd.DataFrame:
    """The frame OLD holds: pandas 1.0 kept the handbook's ids as Python ints in an object block."""
    frame = tutorial_frame(3)
    frame[ID_COLUMNS] = frame[ID_COLUMNS].astype(object)
    frame["TX_DATETIME"] = frame["TX_DATETIME"].astype("datetime64[ns]")
    frame.index = pd.Index(np.arange(3, dtype="int64"))
    frame.columns = pd.Index(list(frame.columns), dtype=object)
    return frame


def old_parts() -> dict[str, bytes]:
    """The fragments OLD is made of, by name, so an attack can swap one."""
    frame = old_expected()
    ints = ["TRANSACTION_ID", "TX_FRAUD", "TX_FRAUD_SCENARIO"]
    cells = frame[ID_COLUMNS].to_numpy().ravel(order="F")  # the block is (columns, rows)
    return {
        "ints": old_array((3, 3), old_dtype("i8"), raw(frame[ints].to_numpy("int64").T)),
        "dates": old_array((1, 3), old_dtype("M8"), raw(frame["TX_DATETIME"].to_numpy("M8[ns]"))),
        "floats": old_array((1, 3), old_dtype("f8"), raw(frame["TX_AMOUNT"].to_numpy())),
        "objects": old_array((4, 3), old_dtype("O8"), items([integer(int(v)) for v in cells])),
        "ints_at": locs([0, 7, 8]),
        "dates_at": slice_of(1, 2),
        "floats_at": slice_of(4, 5),
        "objects_at": locs([2, 3, 5, 6]),
        "columns": labels(list(frame.columns)),
        "index": old_index("Int64Index", old_array((3,), old_dtype("i8"), raw(np.arange(3)))),
        "items": items(
            [labels(ints), labels(["TX_DATETIME"]), labels(["TX_AMOUNT"]), labels(ID_COLUMNS)]
        ),
        "dates_ref": get(11),
        "axes_again": get(1),
        "inner_more": b"",
        "block_more": b"",
        "attrs": text("attrs") + pickle.EMPTY_DICT,
        "manager_key": text("_data"),
    }


BLOCKS = ("ints", "dates", "floats", "objects")


def old_pickle(**swap: bytes) -> bytes:
    """OLD, with the named fragments swapped for others."""
    parts = old_parts()
    assert set(swap) <= set(parts), swap
    parts.update(swap)
    axes = pickle.EMPTY_LIST + put(1) + pickle.MARK + parts["columns"] + parts["index"]
    axes += pickle.APPENDS
    values = items([parts[name] + put(10 + i) for i, name in enumerate(BLOCKS)])
    refs = [get(10), parts["dates_ref"], get(12), get(13)]
    blocks = [
        pickle.EMPTY_DICT + pickle.MARK + text("values") + refs[i]
        + text("mgr_locs") + parts[f"{name}_at"] + (parts["block_more"] if i == 0 else b"")
        + pickle.SETITEMS
        for i, name in enumerate(BLOCKS)
    ]  # fmt: skip
    inner = pickle.EMPTY_DICT + pickle.MARK + text("axes") + parts["axes_again"] + text("blocks")
    inner += items(blocks) + parts["inner_more"] + pickle.SETITEMS
    extra = pickle.EMPTY_DICT + text("0.14.1") + inner + pickle.SETITEM
    state = pickle.MARK + axes + values + parts["items"] + extra + pickle.TUPLE
    manager = stack_global("pandas.core.internals.managers", "BlockManager")
    manager += pickle.EMPTY_TUPLE + pickle.NEWOBJ + state + pickle.BUILD
    frame_state = pickle.EMPTY_DICT + pickle.MARK + parts["manager_key"] + manager
    frame_state += text("_typ") + text("dataframe") + text("_metadata") + pickle.EMPTY_LIST
    frame_state += parts["attrs"] + pickle.SETITEMS
    frame = stack_global("pandas.core.frame", "DataFrame") + pickle.EMPTY_TUPLE + pickle.NEWOBJ
    return proto() + frame + frame_state + pickle.BUILD + pickle.STOP


OLD = old_pickle()


def test_a_pandas_1_0_frame_loads_as_pandas_reads_it(tmp_path: Path) -> None:
    # Given the handbook's layout, written by hand; when it is read; then it holds exactly
    # what pandas' own unpickling gives, ids as Python ints in object columns included
    path = write(tmp_path, OLD, "2018-04-01.pkl")
    assert path.stat().st_size < 20_000
    frame = read_pickled_frame(path)
    pd.testing.assert_frame_equal(frame, old_expected(), check_exact=True)
    pd.testing.assert_frame_equal(frame, pd.read_pickle(path), check_exact=True)
    assert all(type(v) is int for v in frame["CUSTOMER_ID"])


def test_a_pandas_1_0_frame_is_imported_as_its_normalized_table(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    [result] = datasets.import_files(
        storage, [write(tmp_path, OLD, "2018-04-01.pkl")], trust_pickle=True
    )
    pd.testing.assert_frame_equal(
        datasets.read_parquet(storage, result.target), normalize(tutorial_frame(3), "x")
    )


def run_system(marker: Path) -> bytes:
    return stack_global("os", "system") + call1(text(shell(marker)))


def run_eval(marker: Path) -> bytes:
    code = f"__import__('os').system({shell(marker)!r})"
    return stack_global("builtins", "eval") + call1(text(code))


def _cells(first: bytes) -> bytes:
    """The object block with its first cell swapped."""
    cells = [first] + [integer(int(v)) for v in old_expected()[ID_COLUMNS].to_numpy().ravel()[1:]]
    return old_array((4, 3), old_dtype("O8"), items(cells))


OLD_ATTACKS: dict[str, tuple[Callable[[Path], dict[str, bytes]], str]] = {
    # a forbidden global anywhere in the layout
    "os.system as a cell": (lambda m: {"objects": _cells(run_system(m))}, "os.system"),
    "builtins.eval in attrs": (
        lambda m: {"attrs": text("attrs") + pickle.EMPTY_DICT + text("k") + run_eval(m)
                   + pickle.SETITEM},
        "builtins.eval",
    ),
    "os.system as the row index": (lambda m: {"index": run_system(m)}, "os.system"),
    # a REDUCE of an allowed class, or with a callable argument
    "DataFrame called with a callable": (
        lambda m: {"index": stack_global("pandas.core.frame", "DataFrame")
                   + call1(stack_global(OLD_NUMPY, "_reconstruct"))},
        "a call to DataFrame",
    ),
    "a partial of numpy's _reconstruct": (
        lambda m: {"index": stack_global("functools", "partial")
                   + call1(stack_global(OLD_NUMPY, "_reconstruct"))},
        "functools.partial of anything but pandas' block constructor",
    ),
    "the slice class as a placement": (
        lambda m: {"dates_at": stack_global("builtins", "slice")}, "where a 1-d array was due"
    ),
    "the slice class as a cell": (
        lambda m: {"objects": _cells(stack_global("builtins", "slice"))},
        "an object array holding a type",
    ),
    # a BUILD that sets what pandas 1.0 never wrote
    "a frame state setting __class__": (
        lambda m: {"attrs": text("attrs") + pickle.EMPTY_DICT + text("__class__")
                   + stack_global("pandas", "Index")},
        "a DataFrame state with keys",
    ),
    "a frame state with _mgr and _data": (
        lambda m: {"attrs": text("_mgr") + get(1)}, "one of _mgr, _data is due"
    ),
    "a manager state with another key": (
        lambda m: {"inner_more": text("refs") + pickle.NONE}, "older pandas' (axes, values"
    ),
    "a block state with another key": (
        lambda m: {"block_more": text("ndim") + integer(1)}, "not {'values', 'mgr_locs'}"
    ),
    "a datetime dtype with metadata": (
        lambda m: {"dates": old_array(
            (1, 3),
            old_dtype("M8", pickle.EMPTY_DICT + text("k") + text("v") + pickle.SETITEM),
            raw(np.zeros(3, "int64")),
        )},
        "that numpy would not write",
    ),
    # blocks that disagree with the frame or with each other
    "a 4-column block on 3 columns": (lambda m: {"objects_at": locs([2, 3, 5])}, "placed on 3"),
    "a block with more rows than the index": (
        lambda m: {"floats": old_array((1, 4), old_dtype("f8"), raw(np.ones(4)))},
        "a block of (4,) rows in a frame of 3 rows",
    ),
    "two blocks on one column": (lambda m: {"floats_at": slice_of(1, 2)}, "exactly once"),
    "a block past the last column": (lambda m: {"floats_at": slice_of(9, 10)}, "exactly once"),
    "a block's values a copy of the listed array": (
        lambda m: {"dates_ref": old_array((1, 3), old_dtype("M8"), raw(np.zeros(3, "int64")))},
        "values or items disagree",
    ),
    "items that are not the blocks' columns": (
        lambda m: {"items": items([labels(["TX_FRAUD", "TRANSACTION_ID", "TX_FRAUD_SCENARIO"]),
                   labels(["TX_DATETIME"]), labels(["TX_AMOUNT"]), labels(ID_COLUMNS)])},
        "items are not its blocks' columns",
    ),
    "other axes in the 0.14.1 state": (
        lambda m: {"axes_again": pickle.EMPTY_LIST}, "older pandas' (axes, values"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OLD_ATTACKS))
def test_pandas_1_0_frames_with_an_attack_are_refused_and_run_nothing(
    tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "code-ran"
    swap, message = OLD_ATTACKS[name]
    path = write(tmp_path, old_pickle(**swap(marker)), "2018-04-01.pkl")
    refused(path, "refused to unpickle", message, "Parquet")
    assert not marker.exists()


OLD_BOMBS = {
    "a block declaring 2**40 rows": {
        "ints": old_array((3, 2**40), old_dtype("i8"), raw(np.zeros(9, "int64")))
    },
    "an object block declaring 2**31 cells": {
        "objects": old_array((4, 2**29), old_dtype("O8"), items([integer(0)] * 12))
    },
    "a placement of 2**40 columns": {"floats_at": slice_of(0, 2**40)},
    "an index declaring 2**40 rows": {
        "index": old_index("Int64Index", old_array((2**40,), old_dtype("i8"), raw(np.arange(3))))
    },
    "bytes longer than the file": {
        "floats": old_array((1, 3), old_dtype("f8"), pickle.BINBYTES8 + struct.pack("<Q", 2**40))
    },
}


def test_pandas_1_0_frames_declaring_huge_sizes_are_refused_unallocated(tmp_path: Path) -> None:
    paths = [
        write(tmp_path, old_pickle(**swap), f"bomb{i}.pkl")
        for i, swap in enumerate(OLD_BOMBS.values())
    ]
    assert all(path.stat().st_size < 20_000 for path in paths)
    _read_with_capped_memory(paths)


def test_every_truncation_of_a_pandas_1_0_frame_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "2018-04-01.pkl"
    for end in range(0, len(OLD), 3):
        path.write_bytes(OLD[:end])
        with pytest.raises(DatasetError) as info:
            read_pickled_frame(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pandas_1_0_frames_through_the_real_cli(tmp_path: Path) -> None:
    # Given an attack and a good file in the handbook's layout; when the CLI imports each;
    # then the attack exits non-zero with one line and runs nothing, the good file is stored
    marker = tmp_path / "code-ran"
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = write(tmp_path / "bad", old_pickle(objects=_cells(run_system(marker))), "2018-04-01.pkl")
    good = write(tmp_path / "good", OLD, "2018-04-01.pkl")
    root = tmp_path / "root"
    runs = [
        subprocess.run(
            [sys.executable, "-m", "batchml", "--root", str(root), "data", "import",
             str(path), "--trust-pickle"],
            check=False, capture_output=True, text=True, cwd=REPO, timeout=60,
        )
        for path in (bad, good)
    ]  # fmt: skip
    lines = [line for line in runs[0].stderr.splitlines() if line.strip()]
    assert runs[0].returncode != 0 and len(lines) == 1, runs[0].stderr
    assert str(bad) in lines[0] and "os.system" in lines[0] and not marker.exists()
    assert runs[1].returncode == 0, runs[1].stderr
    stored = datasets.read_parquet(Storage(root), "datasets/training/2018-04-01.parquet")
    pd.testing.assert_frame_equal(stored, normalize(tutorial_frame(3), "x"))


def test_object_arrays_hold_plain_scalars_only(tmp_path: Path) -> None:
    # a frame pickled by today's pandas with a class in a cell: the old code returned it
    frame = pd.DataFrame({"o": pd.Series([1, slice], dtype=object)})
    refused(write(tmp_path, pickle.dumps(frame, protocol=4)), "an object array holding a type")
    mixed = pd.DataFrame({"o": pd.Series([1, "x", 2.5, None, True, pd.NA], dtype=object)})
    path = write(tmp_path, pickle.dumps(mixed, protocol=4))
    pd.testing.assert_frame_equal(read_pickled_frame(path), mixed)


# -- the import path (moved from tests/fraud/test_datasets.py) -------------------------------------


class _RunsCode:
    """Unpickling this runs a shell command: the classic malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (shell(self.marker),))


def test_pickle_without_trust_is_refused_unopened(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    src = write(tmp_path, pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UntrustedPickleError, match="--trust-pickle"):
        datasets.import_files(Storage(tmp_path / "root"), [src])
    assert not marker.exists()


def test_pickle_that_runs_code_is_refused_even_when_trusted(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    marker = tmp_path / "code-ran"
    src = write(tmp_path, pickle.dumps(_RunsCode(marker)))
    with pytest.raises(DatasetError, match=r"refused to unpickle.*(posix|os)\.system"):
        datasets.import_files(storage, [src], trust_pickle=True)
    assert not marker.exists()
    # a DataFrame hiding the payload in a cell is refused too
    hidden = tutorial_frame().assign(TX_FRAUD_SCENARIO=[0, 0, 0, 0, _RunsCode(marker)])
    src.write_bytes(pickle.dumps(hidden))
    with pytest.raises(DatasetError, match="refused to unpickle"):
        datasets.import_files(storage, [src], trust_pickle=True)
    assert not marker.exists()


# -- fuzzing: random opcode streams and mutated real pickles ---------------------------------

_DANGEROUS_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen")
_DANGEROUS_EVENTS += ("exec", "compile", "os.remove", "os.rename", "socket.connect", "ctypes")
_AUDIT: dict[str, list[str] | None] = {"events": None}


def _audit(event: str, args: tuple[object, ...]) -> None:
    events = _AUDIT["events"]
    if events is None or not event.startswith(_DANGEROUS_EVENTS):
        return
    code = args[0] if args else None
    if event == "exec" and not getattr(code, "co_filename", "<").startswith("<"):
        return  # a module's own code, run by a lazy import inside pandas or numpy
    events.append(f"{event} {args!r:.200}")


sys.addaudithook(_audit)  # cannot be removed: it records only while a fuzz example runs

_EVIL_NAMES = [
    ("os", "system"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("numpy.dtypes", "__builtins__.get"),
    ("numpy.dtypes", "_add_dtype_helper"),
    ("pandas", "DataFrame.__init__"),
    ("copyreg", "_reconstructor"),
    ("pandas.core.arrays.sparse.dtype", "SparseDtype"),
]
_STRINGS = ["f8", "O8", "M8", "i8", "b1", "<", "|", "latin1", "data", "name", "start", "stop"]
_STRINGS += ["_mgr", "_typ", "dataframe", "ndim", "unit", "us", "tz", "categories", "ordered"]
_STRINGS += ["python", "pyarrow", "large_string", "touch /tmp/x", "eval", "os", "system"]


def _names() -> list[tuple[str, str]]:
    from batchml.fraud.data import pickle_allowlist

    return sorted(pickle_allowlist.NAMES) + _EVIL_NAMES


_SIMPLE_OPS = [
    pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.MARK, pickle.TUPLE, pickle.TUPLE1,
    pickle.TUPLE2, pickle.TUPLE3, pickle.EMPTY_TUPLE, pickle.EMPTY_LIST, pickle.EMPTY_DICT,
    pickle.APPEND, pickle.APPENDS, pickle.SETITEM, pickle.SETITEMS, pickle.MEMOIZE, pickle.REDUCE,
    pickle.NEWOBJ, pickle.BUILD, pickle.STACK_GLOBAL, pickle.POP, pickle.DUP, pickle.STOP,
]  # fmt: skip
_ALL_OPCODES = [op.code.encode("latin-1") for op in __import__("pickletools").opcodes]


def _opcode_stream() -> st.SearchStrategy[bytes]:
    names = _names()
    one = st.one_of(
        st.sampled_from(_SIMPLE_OPS),
        st.sampled_from(_ALL_OPCODES),  # any opcode, usually with a missing or bad argument
        st.integers(-(2**70), 2**70).map(integer),
        st.sampled_from(_STRINGS).map(text),
        st.binary(max_size=24).map(lambda b: pickle.SHORT_BINBYTES + bytes([len(b)]) + b),
        st.sampled_from(names).map(lambda pair: stack_global(*pair)),
        st.sampled_from(names).map(lambda pair: global_op(*pair)),
        st.integers(0, 12).map(get),
        st.just(STUB),
        st.just(F8),
    )
    body = st.lists(one, max_size=40).map(b"".join)
    return st.tuples(st.integers(2, 5), body).map(lambda p: proto(p[0]) + p[1] + pickle.STOP)


def _mutated_pickle() -> st.SearchStrategy[bytes]:
    frame = _every_column_type(2)
    originals = [pickle.dumps(frame, protocol=p) for p in (2, 4, 5)]
    originals += [(TUTORIAL / "training" / "2018-04-01.pkl").read_bytes()[:4000]]
    edit = st.tuples(
        st.sampled_from(["flip", "insert", "delete", "opcode"]),
        st.floats(0, 1),
        st.integers(0, 255),
    )

    def mutate(args: tuple[bytes, list[tuple[str, float, int]], float]) -> bytes:
        data, edits, keep = bytearray(args[0]), args[1], args[2]
        for kind, where, value in edits:
            at = int(where * (len(data) - 1))
            if kind == "flip":
                data[at] ^= 1 << (value % 8)
            elif kind == "insert":
                data.insert(at, value)
            elif kind == "delete" and len(data) > 2:
                del data[at]
            else:
                data[at : at + 1] = _ALL_OPCODES[value % len(_ALL_OPCODES)]
        return bytes(data[: max(2, int(keep * len(data)))] if keep < 0.5 else data)

    return st.tuples(st.sampled_from(originals), st.lists(edit, max_size=6), st.floats(0, 1)).map(
        mutate
    )


def test_fuzzed_pickles_call_nothing_outside_the_allow_list(tmp_path: Path) -> None:
    from batchml.fraud.data import pickle_allowlist
    from batchml.fraud.data.safe_pickle import _SafeUnpickler

    allowed = {id(obj) for obj in pickle_allowlist.objects().values()}
    resolved: list[object] = []
    real_find_class = _SafeUnpickler.find_class

    def recording_find_class(self: _SafeUnpickler, module: str, name: str) -> object:
        obj = real_find_class(self, module, name)
        resolved.append(obj)
        return obj

    path = tmp_path / "fuzz.pkl"
    outcomes: dict[str, int] = {}

    @settings(max_examples=500, deadline=None, database=None)
    @given(st.one_of(_opcode_stream(), _mutated_pickle()))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        resolved.clear()
        _AUDIT["events"] = events = []
        try:
            frame = read_pickled_frame(path)
        except DatasetError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            kind = str(exc).split(": ")[1][:20]
        else:
            assert type(frame) is pd.DataFrame
            kind = "loaded"
        finally:
            _AUDIT["events"] = None
        outcomes[kind] = outcomes.get(kind, 0) + 1
        assert events == []
        assert all(id(obj) in allowed for obj in resolved), resolved

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_SafeUnpickler, "find_class", recording_find_class)
        run()
    # the fuzzer did reach past the first opcode: some pickles resolved names, some loaded
    assert outcomes.get("loaded", 0) > 0 and len(outcomes) > 2, outcomes


def test_trusted_dataframe_pickle_is_imported(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    src = tmp_path / "2018-04-01.pkl"
    tutorial_frame().to_pickle(src)
    [result] = datasets.import_files(storage, [src], trust_pickle=True)
    assert result.target == "datasets/training/2018-04-01.parquet"
    pd.testing.assert_frame_equal(
        datasets.read_parquet(storage, result.target), normalize(tutorial_frame(), "x")
    )

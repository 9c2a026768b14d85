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


def test_tiny_pickles_asking_for_gigabytes_are_refused_unallocated(tmp_path: Path) -> None:
    # in a child whose address space is capped 1 GiB above what it has mapped after its
    # imports: a real allocation of the size asked for would fail there with MemoryError
    paths = {
        name: write(tmp_path, proto() + data + pickle.STOP, f"bomb{i}.pkl")
        for i, (name, data) in enumerate(BOMBS.items())
    }
    for name, path in paths.items():  # tiny, but for the one carrying a 1 MB string
        assert path.stat().st_size < (2**21 if "huge argument" in name else 300)
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
        + [str(path) for path in paths.values()],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == len(paths) and all(line.startswith("REFUSED") for line in lines), lines
    for line, path in zip(lines, paths.values(), strict=True):
        assert str(path) in line


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

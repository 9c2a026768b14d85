"""Checkpoint files: plain arrays plus JSON metadata in one zip, never a pickle.

A checkpoint is a ``.npz``-compatible zip (``numpy.load(path, allow_pickle=False)`` reads it)
holding the model's state arrays and a ``__meta__`` entry: the format, model kind and
parameters, the feature list, the library versions it was trained with, and its place in the
lineage. Zip entries carry a fixed timestamp, so the same model always gives the same bytes and
the same sha256.

Written incrementally: most of one version's state is the previous version's (the trees grown
so far, the replay memory's rows of earlier days). A model may describe its arrays as
:class:`Layout` pieces (e.g. one per day of the replay memory, one per day's trees); each piece
is deflated on its own (level 1, ending on a byte boundary with a sync flush) and an entry's
data is its pieces' streams one after the other, which is one valid deflate stream. A process
keeps the pieces it deflated for its last checkpoints, so a train step deflates only the new
day's rows and trees: the bytes are those of deflating every piece afresh, whatever this
process wrote before. Arrays a layout marks ``stored`` (the replay memory's scores: every
value changes each step and deflate saves ~6 % of them) are written uncompressed.

Format ``batchml-checkpoint/1`` is unchanged by this: the same entries, the same arrays; files
of the previous writer (one deflate stream per entry, :func:`dumps_zipfile`, still used past the
zip format's 4 GiB) and of this one are read alike, by ``numpy.load``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import struct
import threading
import zipfile
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from batchml.errors import StorageError

FORMAT = "batchml-checkpoint/1"
_META = "__meta__"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_LEVEL = 1  # deflate level: four times faster to write than the default, files ~20 % larger
_DOS_DATE = (1 << 5) | 1  # 1980-01-01 in a zip header (time 00:00:00 is 0)
_LIMIT = 0xFFFFFFFF  # past this a zip needs zip64 records: dumps_zipfile writes those


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: each lookup parses a package's METADATA file (~15 ms apiece on
    a busy machine, most of a checkpoint's writing), and the modules a process imported do not
    change version under it."""
    versions = [("python", platform.python_version())]
    for dist in ("batchml", "numpy", "pandas", "scikit-learn", "lightgbm"):
        try:
            versions.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries a checkpoint records it was trained with."""
    return dict(_installed_versions())


def params_digest(state: dict[str, np.ndarray]) -> str:
    """sha256 over the state arrays (names, dtypes, shapes, bytes): equal iff bit-identical."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.ascontiguousarray(state[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Layout:
    """How a state's arrays split into pieces that recur from one checkpoint to the next.

    ``pieces[name]`` lists ``(key, nbytes)`` in order, covering the array's bytes (C order):
    a piece with the same key and the same bytes as one this process deflated lately is not
    deflated again. Arrays not listed are one piece. ``stored`` names arrays written
    uncompressed."""

    pieces: Mapping[str, Sequence[tuple[Hashable, int]]] = field(default_factory=dict)
    stored: frozenset[str] = frozenset()


class _Deflated:
    """Deflated pieces of the last few checkpoints this process wrote, by (array, key)."""

    KEEP = 2  # pieces unused for this many checkpoints are forgotten

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pieces: dict[tuple[str, Hashable], tuple[bytes, bytes, int]] = {}
        self._written = 0

    def piece(self, name: str, key: Hashable, raw: bytes) -> bytes:
        with self._lock:
            kept = self._pieces.get((name, key))
        if kept is not None and kept[0] == raw:
            data = kept[1]
        else:
            compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            data = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
        with self._lock:
            self._pieces[(name, key)] = (raw, data, self._written)
        return data

    def written(self) -> None:
        with self._lock:
            self._written += 1
            old = self._written - self.KEEP
            self._pieces = {k: v for k, v in self._pieces.items() if v[2] >= old}

    def clear(self) -> None:
        with self._lock:
            self._pieces.clear()


_deflated = _Deflated()
#: the end of a deflate stream made of sync-flushed pieces: an empty final block
_FINAL = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


def _entries(state: dict[str, np.ndarray], meta: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    if _META in state:
        raise ValueError(f"state may not contain an array named {_META}")
    entries = {**state, _META: np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)}
    out = []
    for name in sorted(entries):
        array = np.asarray(entries[name])
        if array.dtype.hasobject:
            raise ValueError(f"state array {name!r} holds Python objects; use numeric arrays")
        out.append((name, array if array.flags.c_contiguous else array.copy(order="C")))
    return out


def _npy_header(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:  # a header over 64 KiB (a very long shape or dtype)
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _pieces(name: str, data: memoryview, layout: Layout) -> list[tuple[Hashable, memoryview]]:
    spans = layout.pieces.get(name)
    if not spans:
        return [(None, data)]
    out, start = [], 0
    for key, size in spans:
        out.append((key, data[start : start + size]))
        start += size
    if start != len(data):
        raise ValueError(f"layout of {name!r} covers {start} bytes of {len(data)}")
    return out


def _entry(name: str, array: np.ndarray, layout: Layout) -> tuple[bytes, int, int, int]:
    """(data, method, crc32, uncompressed size) of one zip entry."""
    header = _npy_header(array)
    data = array.reshape(-1).view(np.uint8).data
    crc = zlib.crc32(data, zlib.crc32(header))
    size = len(header) + len(data)
    if name in layout.stored:
        return header + data.tobytes(), zipfile.ZIP_STORED, crc, size
    parts = [_deflated.piece(name, ("npy header",), header)]
    parts += [
        _deflated.piece(name, key, piece.tobytes()) for key, piece in _pieces(name, data, layout)
    ]
    return b"".join([*parts, _FINAL]), zipfile.ZIP_DEFLATED, crc, size


def dumps(
    state: dict[str, np.ndarray], meta: dict[str, Any], layout: Layout | None = None
) -> bytes:
    """Serialise state arrays and metadata to deterministic bytes (same state, same bytes)."""
    entries = _entries(state, meta)
    layout = layout or Layout()
    out: list[bytes] = []  # joined once at the end: no growing buffer copied as it grows
    central: list[bytes] = []
    offset = 0
    for name, array in entries:
        data, method, crc, size = _entry(name, array, layout)
        encoded = f"{name}.npy".encode()
        flags = 0 if encoded.isascii() else 0x800  # bit 11: the name is UTF-8
        if max(size, len(data), offset) >= _LIMIT or len(entries) >= 0xFFFF:
            return dumps_zipfile(state, meta)
        fields = (20, flags, method, 0, _DOS_DATE, crc, len(data), size, len(encoded), 0)
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + encoded
        out += [local, data]
        central.append(
            struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", (3 << 8) | 20, *fields, 0, 0, 0, 0o644 << 16, offset
            )
            + encoded
        )
        offset += len(local) + len(data)
    start = offset
    directory = b"".join(central)
    if start + len(directory) >= _LIMIT:
        return dumps_zipfile(state, meta)
    out.append(directory)
    out.append(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), start, 0
        )
    )
    _deflated.written()
    return b"".join(out)


def dumps_zipfile(state: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """The previous writer: each entry one deflate stream, by :mod:`zipfile` (zip64 past 4 GiB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in _entries(state, meta):
            payload = io.BytesIO()
            np.lib.format.write_array(payload, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, payload.getvalue(), compresslevel=_LEVEL)
    return buffer.getvalue()


def forget_pieces() -> None:
    """Forget the deflated pieces kept for the next checkpoint (tests use it: a cold writer)."""
    _deflated.clear()


def loads(data: bytes, source: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read state and metadata back; ``source`` names the file in errors. Never unpickles."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise StorageError(f"{source}: not a batchml checkpoint ({exc})") from None
    if _META not in arrays:
        raise StorageError(f"{source}: not a batchml checkpoint (no metadata)")
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    if meta.get("format") != FORMAT:
        raise StorageError(f"{source}: unsupported checkpoint format {meta.get('format')!r}")
    return arrays, meta


def read_verified(path: Path, expected_sha256: str | None = None) -> bytes:
    """A checkpoint file's bytes, checked against the sha256 the lineage recorded (if any)."""
    data = path.read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise StorageError(
            f"{path}: checkpoint does not match the sha256 recorded in the lineage; "
            "the file was changed or truncated on the shared volume"
        )
    return data


def load_file(
    path: Path, expected_sha256: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint file, verifying its sha256 when the lineage recorded one."""
    return loads(read_verified(path, expected_sha256), str(path))

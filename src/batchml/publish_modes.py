"""Storage modes: how a committed output reaches its final name, and how a file is replaced.

``rename`` (the default; a local disk or NFS): an output is renamed from its staging name to its
final name, and :meth:`~batchml.storage.Storage.open_atomic` writes a temporary file beside the
target and renames it into place. Readers see the old file or the new one, never half of one.

``write-once`` (a Cloud Storage bucket mounted with Cloud Storage FUSE, where a rename is a copy
and a delete, not atomic, and there are no hard links nor file locks): nothing is ever renamed.

* Publishing an output (:func:`publish_write_once`) reads the staged bytes into a private
  snapshot and checks them against the recorded sha256, then writes them into the final name,
  opened with ``O_CREAT | O_EXCL`` (it is created, never overwritten); the copy is flushed and
  closed, read back and checked, and only then is the staged file deleted. Before the copy, a
  small *publishing marker* is created in the attempt's staging folder
  (``.staging/<item>/t<token>/.publishing/<sha256 of the final name>``); it is deleted last.
* Exactly once: the commit record in the queue lists (staged, final, sha256). A final file with
  the recorded sha256 is published: nothing more is done (a roll-forward or a second publisher
  only removes the staged copy). A final file with another digest while the staged file and the
  marker still exist is this output's own copy, interrupted (a crash mid-copy): it is deleted and
  copied again. Without the marker it is somebody else's file, which is never overwritten: the
  publish fails naming it. Without the staged file it was changed after the commit: an error too.
  While a copy is unfinished the staged file still exists, so the output counts as pending
  (:meth:`~batchml.storage.Storage.is_pending`) and is rolled forward by the next reader; readers
  of checkpoints check the recorded sha256, so a half-copied checkpoint is never loaded.
* A file batchml rewrites in place (``report.txt``, ``report.json``, ``report.html``, a dataset
  day regenerated with ``--force``) is written by :func:`write_whole`: the bytes are collected in
  memory, then the old file (if any, and if different) is deleted and the new one created with
  ``O_EXCL``, written, flushed and closed. Between the two the name is absent; the last writer
  wins. On Cloud Storage FUSE the object is uploaded at close, so a reader sees the old object,
  none, or the new one, never half of one. (On a local disk in this mode a reader racing the
  write could see a partial file: use ``rename`` there.)
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

from batchml import beneath
from batchml.errors import ConfigError, PathEscapeError, StorageError

#: the folder, inside an attempt's staging folder, of the markers of its unfinished publishes
MARKERS = ".publishing"
_RACES = 3  # another publisher creating the same final name meanwhile: look again this often
_CHUNK = 1 << 20
_IN_MEMORY = 16 << 20  # a staged snapshot larger than this spills to a local temporary file


class StorageMode(enum.StrEnum):
    RENAME = "rename"
    WRITE_ONCE = "write-once"


def parse_mode(value: str | StorageMode) -> StorageMode:
    """The storage mode named ``value``, or a ConfigError listing the choices."""
    try:
        return StorageMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in StorageMode)
        raise ConfigError(
            f"--storage-mode {value!r}: not a storage mode; choose one of {choices} "
            "(write-once for a Cloud Storage FUSE bucket)"
        ) from None


def marker_path(staged: str, final: str) -> str:
    """Root-relative path of the publishing marker of one output (clean, checked paths)."""
    attempt = "/".join(beneath.parts(staged)[:3])  # .staging/<encoded item id>/t<token>
    name = hashlib.sha256(final.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{attempt}/{MARKERS}/{name}"


def publish_write_once(root: Path, staged: str, final: str, sha256: str) -> None:
    """Publish one committed output without a rename (see the module docstring).

    ``staged`` and ``final`` are clean root-relative paths (checked by the caller). The staged
    bytes are read and checked against ``sha256`` into a private snapshot before anything is
    deleted or created, so a publisher that deletes a half-written final always holds the
    whole output to write again, even if another publisher removed the staged copy meanwhile."""
    marker = marker_path(staged, final)
    for _ in range(_RACES):
        with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as snapshot:
            if beneath.lstat(root, final) is not None:
                if beneath.sha256(root, final) == sha256:
                    _finish(root, staged, final, marker, sha256, verified=True)
                    return
                if not _snapshot(root, staged, sha256, snapshot):
                    raise StorageError(
                        f"{final}: published file does not match its recorded sha256 "
                        f"{sha256[:12]}…; it was changed after the commit"
                    )
                _clear_own_partial_copy(root, final, marker, sha256)
            elif not _snapshot(root, staged, sha256, snapshot):
                if beneath.lstat(root, final) is not None:
                    continue  # published by another process meanwhile
                raise StorageError(
                    f"{final}: neither the staged file {staged} nor the final file exists; "
                    "the committed output was deleted from the storage root"
                )
            _touch(root, marker)
            snapshot.seek(0)
            try:
                beneath.write_exclusive(root, final, iter(lambda: snapshot.read(_CHUNK), b""))
            except FileExistsError:
                continue  # another publisher created it meanwhile: look at it again
            if _finish(root, staged, final, marker, sha256):
                return
    raise StorageError(
        f"{final}: other processes kept rewriting it while it was published; the staged copy "
        "is kept and the next roll-forward publishes it"
    )


def _snapshot(root: Path, staged: str, sha256: str, into: IO[bytes]) -> bool:
    """Copy the staged file into ``into``, checking its digest; False if it is missing."""
    digest = hashlib.sha256()
    try:
        fd = beneath.open_file(root, staged, os.O_RDONLY)
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise PathEscapeError(f"{staged}: not a regular file under the storage root {root}")
        while block := handle.read(_CHUNK):
            digest.update(block)
            into.write(block)
    if digest.hexdigest() != sha256:
        raise StorageError(
            f"{staged}: staged file does not match its recorded sha256 {sha256[:12]}…; "
            "it was changed after the commit, so it is not published"
        )
    return True


def _clear_own_partial_copy(root: Path, final: str, marker: str, sha256: str) -> None:
    """Delete ``final`` if it is this output's own interrupted copy (its marker exists)."""
    if beneath.lstat(root, marker) is None:
        raise StorageError(
            f"{final}: already exists with another sha256 than the committed output's "
            f"{sha256[:12]}…, and write-once storage never overwrites a file; if it is left over "
            "from an earlier run, remove it, and the output is published at the next roll-forward"
        )
    beneath.unlink(root, final)  # our own half copy: a crash or a failure mid-copy


def _touch(root: Path, relpath: str) -> None:
    fd = beneath.open_file(root, relpath, os.O_WRONLY | os.O_CREAT)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    beneath.fsync_dir(root, beneath.parts(relpath)[:-1])


def _finish(
    root: Path, staged: str, final: str, marker: str, sha256: str, *, verified: bool = False
) -> bool:
    """If the final file (read back) is whole, delete the staged copy, then the marker."""
    if not verified and beneath.sha256(root, final) != sha256:
        return False  # replaced meanwhile by another publisher's unfinished copy: look again
    beneath.unlink(root, staged)
    beneath.rmdir_empty(root, staged.rpartition("/")[0], stop=1)
    beneath.unlink(root, marker)
    beneath.rmdir_empty(root, marker.rpartition("/")[0], stop=1)
    return True


def write_whole(root: Path, relpath: str, data: bytes) -> None:
    """Replace ``relpath`` by ``data`` without a rename: delete + exclusive create (see above).

    A file that already holds exactly ``data`` is left alone."""
    for _ in range(_RACES):
        try:
            fd = beneath.open_file(root, relpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            if beneath.sha256(root, relpath) == hashlib.sha256(data).hexdigest():
                return
            beneath.unlink(root, relpath)
            continue
        try:
            beneath.write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            beneath.unlink(root, relpath)
            raise
        os.close(fd)
        beneath.fsync_dir(root, beneath.parts(relpath)[:-1])
        return
    raise StorageError(f"{relpath}: other processes kept rewriting it meanwhile; try again")

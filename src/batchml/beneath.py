"""File operations confined to a directory: every path is walked from a descriptor of the root.

A root-relative path is never handed to the kernel whole. Each call opens the root, then each
folder of the path one component at a time with ``O_DIRECTORY | O_NOFOLLOW`` relative to the
folder before it (``dir_fd``), and finally acts on the last component relative to its folder:
``os.open(..., O_NOFOLLOW, dir_fd=)``, ``os.mkdir(..., dir_fd=)``, ``os.rename(...,
src_dir_fd=, dst_dir_fd=)``. A symlink anywhere below the root raises
:class:`~batchml.errors.PathEscapeError` naming the path, whether it was there before the call
or swapped in while another step ran: a folder, once opened, is the folder that is written to.
The root itself may be a symlink (e.g. to a mount); only what lies beneath it is checked.

Paths given here must already be lexically clean (no ``..``, not absolute): the callers check
that first with :meth:`batchml.storage.Storage.resolve`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchml.errors import PathEscapeError, StorageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a folder created meanwhile by someone else is fine; one pruned meanwhile is walked again
_WALK_TRIES = 5


def parts(relpath: str) -> list[str]:
    """The components of a clean root-relative POSIX path (``""`` and ``.`` are dropped)."""
    out = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in out:
        raise PathEscapeError(f"{relpath!r} contains '..'; it must stay inside the storage root")
    return out


def _symlink_error(root: Path, names: list[str]) -> PathEscapeError:
    return PathEscapeError(
        f"{'/'.join(names)}: is a symlink under the storage root {root}; batchml reads and "
        "writes its own files only through real folders, so it refuses to follow it"
    )


def _refusal(root: Path, names: list[str], dir_fd: int) -> StorageError:
    """Why the folder ``names`` could not be opened: a symlink, or a file in the way."""
    if _is_symlink(names[-1], dir_fd):
        return _symlink_error(root, names)
    return StorageError(f"{'/'.join(names)}: is a file, not a folder, under {root}")


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _open_root(root: Path, create: bool) -> int:
    if create:
        os.makedirs(root, exist_ok=True)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir(root: Path, names: list[str], *, create: bool = False) -> int:
    """A descriptor of the folder ``root/names...`` (the caller closes it).

    With ``create``, missing folders are made (mode 0o777 less the umask) and the folder
    holding each new one is flushed. Without it, a missing folder raises FileNotFoundError."""
    for attempt in range(_WALK_TRIES):
        try:
            return _walk(root, names, create)
        except FileNotFoundError:
            # with create, a folder we just made or opened was pruned by a cleaner: walk again
            if not create or attempt == _WALK_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _walk(root: Path, names: list[str], create: bool) -> int:
    fd = _open_root(root, create)
    try:
        for depth, name in enumerate(names):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                    os.fsync(fd)  # the new folder's name survives a power loss
                except FileExistsError:
                    pass
                child = _open_child(root, names[: depth + 1], fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refusal(root, names[: depth + 1], fd) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(root: Path, names: list[str], fd: int) -> int:
    try:
        return os.open(names[-1], _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refusal(root, names, fd) from None
        raise


@contextlib.contextmanager
def folder(root: Path, names: list[str], *, create: bool = False) -> Iterator[int]:
    """``open_dir`` as a context manager."""
    fd = open_dir(root, names, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def makedirs(root: Path, relpath: str) -> None:
    """Create the folder ``relpath`` and its parents beneath ``root``."""
    with folder(root, parts(relpath), create=True):
        pass


def open_file(root: Path, relpath: str, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of ``relpath`` beneath ``root`` (never through a symlink; with ``O_CREAT``
    its folders are made). Returns the descriptor; the caller closes it."""
    names = parts(relpath)
    with folder(root, names[:-1], create=bool(flags & os.O_CREAT)) as parent:
        try:
            return os.open(names[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (
                exc.errno == errno.ENOTDIR and _is_symlink(names[-1], parent)
            ):
                raise _symlink_error(root, names) from None
            raise


def lstat(root: Path, relpath: str) -> os.stat_result | None:
    """The status of ``relpath`` itself (a symlink is not followed), None if it is missing."""
    names = parts(relpath)
    try:
        with folder(root, names[:-1]) as parent:
            return os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_file(root: Path, relpath: str) -> bool:
    """True if ``relpath`` is a regular file reached without a symlink."""
    st = lstat(root, relpath)
    return st is not None and stat.S_ISREG(st.st_mode)


def sha256(root: Path, relpath: str, chunk: int = 1 << 20) -> str:
    """The sha256 of the regular file ``relpath``, read beneath ``root``."""
    digest = hashlib.sha256()
    fd = open_file(root, relpath, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise PathEscapeError(f"{relpath}: not a regular file under the storage root {root}")
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(root: Path, relpath: str) -> None:
    """Flush ``relpath``'s data to stable storage."""
    fd = open_file(root, relpath, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(root: Path, names: list[str]) -> None:
    """Flush the folder ``names`` (the entries made in it become durable)."""
    with folder(root, names) as fd:
        os.fsync(fd)


def rename(root: Path, src: str, dst: str, *, flush: bool = True) -> None:
    """Rename the regular file ``src`` to ``dst`` (folders of ``dst`` made as needed), then
    flush ``dst``'s folder so the new name survives a power loss (with ``flush=False`` the
    caller flushes it, e.g. once after several renames into it)."""
    s_names, d_names = parts(src), parts(dst)
    with folder(root, s_names[:-1]) as s_dir, folder(root, d_names[:-1], create=True) as d_dir:
        st = os.stat(s_names[-1], dir_fd=s_dir, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise _symlink_error(root, s_names)
        os.rename(s_names[-1], d_names[-1], src_dir_fd=s_dir, dst_dir_fd=d_dir)
        moved = os.stat(d_names[-1], dir_fd=d_dir, follow_symlinks=False)
        if not stat.S_ISREG(moved.st_mode):  # swapped for a symlink after the check above
            os.unlink(d_names[-1], dir_fd=d_dir)
            raise _symlink_error(root, s_names)
        if flush:
            os.fsync(d_dir)


def listdir(root: Path, relpath: str) -> list[str]:
    """Names in the folder ``relpath`` ([] if it is missing)."""
    try:
        with folder(root, parts(relpath)) as fd:
            return os.listdir(fd)
    except FileNotFoundError:
        return []


def rmtree(root: Path, relpath: str) -> None:
    """Remove ``relpath`` and everything in it; a symlink is removed, never followed."""
    names = parts(relpath)
    try:
        with folder(root, names[:-1]) as parent:
            st = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(names[-1], dir_fd=parent)
            else:
                os.unlink(names[-1], dir_fd=parent)
    except FileNotFoundError:
        return


def rmdir_empty(root: Path, relpath: str, *, stop: int) -> None:
    """Remove ``relpath`` and its parents while they are empty, keeping the first ``stop``
    components (e.g. ``stop=1`` keeps ``.staging``)."""
    names = parts(relpath)
    while len(names) > stop:
        try:
            with folder(root, names[:-1]) as parent:
                os.rmdir(names[-1], dir_fd=parent)
        except OSError:  # not empty, already gone, or a symlink: stop here
            return
        names = names[:-1]


def unlink(root: Path, relpath: str) -> None:
    """Remove the file (or symlink, never followed) ``relpath``; a missing one is fine."""
    names = parts(relpath)
    try:
        with folder(root, names[:-1]) as parent:
            os.unlink(names[-1], dir_fd=parent)
    except FileNotFoundError:
        return


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_exclusive(root: Path, dst: str, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a new file ``dst`` created with ``O_EXCL`` (never an existing one:
    FileExistsError), then flush it and its folder. No rename: the bytes are written once under
    their final name (write-once storage); a failure mid-way leaves the part written."""
    fd = open_file(root, dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for block in chunks:
            write_all(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(root, parts(dst)[:-1])

"""The storage root: confined paths, atomic writes, and publish-after-commit.

Layout (see docs/design.md)::

    <root>/datasets/training/<day>.parquet
    <root>/datasets/testing/<name>.parquet
    <root>/runs/<run>/checkpoints/v<NNNN>-<day>.npz (+ .sha256)
    <root>/runs/<run>/records/<item-id>.json
    <root>/runs/<run>/predictions/v<NNNN>/<day>.parquet
    <root>/.staging/<item-id>/t<token>/<name>  one attempt's outputs, not yet published

Run names and item ids become file names through :func:`safe_name`, which is injective: two
different names never share a folder (``exp:1`` → ``exp%3A1``, ``exp_1`` stays ``exp_1``).

Every relative path that comes from a user or a queue item goes through :meth:`Storage.resolve`,
which refuses absolute paths, ``..`` and symlinks that lead outside the root. What batchml itself
writes, renames, hashes or removes is reached through folder descriptors walked from the root
(:mod:`batchml.beneath`), so a symlink swapped in mid-way is refused instead of followed.
Files are created with mode ``0o666`` less the umask.

Exactly-once outputs: a task writes into a staging folder private to its attempt (item id +
fencing token), flat: each output is a file of that folder named by the :func:`safe_name` of
its final path (``runs/r/a.npz`` → ``runs%2Fr%2Fa.npz``), so staging makes no subfolders and
sealing flushes one folder. (Attempts staged by earlier versions mirrored the final tree in
subfolders; their commit records name those paths, and they publish alike.) Before the commit
the worker flushes the staged files and their folder to stable storage (:meth:`Storage.seal`);
only after the queue accepted the commit is a file renamed to its final name
(:meth:`Storage.publish`), and the final folder flushed: an attempt's outputs are renamed
together, then each destination folder is flushed once, after all its renames
(:meth:`Storage.publish_all`). The rename is idempotent and can be redone by anyone holding the
publication record, so a worker killed between commit and rename loses nothing: the next
reader rolls the publication forward. Staging folders of attempts that ended are removed by
:func:`batchml.worker.publish.roll_forward`.

That is the ``rename`` storage mode. On a Cloud Storage FUSE bucket, where a rename is a copy and
a delete, the ``write-once`` mode publishes and rewrites files without any rename
(:mod:`batchml.publish_modes`, which also gives its exactly-once argument).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from batchml import beneath, publish_modes
from batchml.errors import PathEscapeError, StorageError
from batchml.publish_modes import StorageMode

log = logging.getLogger("batchml.storage")
_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@=+")
#: encoded names longer than this keep a readable prefix and end in ``%~`` + a digest
_LONG = 200
STAGING = ".staging"


def safe_name(text: str) -> str:
    """The file name of an item id or run name: one path component, injective, readable.

    Each UTF-8 byte outside ``A-Z a-z 0-9 . _ - @ = +`` is written ``%XX`` (so is ``%`` itself,
    and a leading ``.``): ``exp:1`` → ``exp%3A1``, while ``exp_1``, ``default`` and
    ``2018-04-01`` are unchanged. The result is never empty, ``.`` or ``..``, and two different
    texts never give the same name. A name that would pass 200 characters keeps its first 160
    and ends in ``%~`` and 32 hex digits of the text's sha256 (no short name contains ``%~``).
    """
    raw = text.encode("utf-8", "surrogatepass")
    out = "".join(
        chr(b) if b in _KEEP and not (i == 0 and b == ord(".")) else f"%{b:02X}"
        for i, b in enumerate(raw)
    )
    if not out:
        return "%"  # the empty text: a lone '%' is no other text's name
    if len(out) > _LONG:
        cut = 160
        cut = out.rfind("%", cut - 2, cut) if "%" in out[cut - 2 : cut] else cut
        out = out[:cut] + "%~" + hashlib.sha256(raw).hexdigest()[:32]
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Publication:
    """One output of a committed attempt: where it was staged, where it goes, its digest."""

    staged: str
    final: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"staged": self.staged, "final": self.final, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Publication:
        return cls(staged=str(data["staged"]), final=str(data["final"]), sha256=str(data["sha256"]))


class Storage:
    """A folder (local, an NFS mount, or a Cloud Storage FUSE mount in ``write-once`` mode) that
    holds datasets, checkpoints, records and reports."""

    def __init__(
        self, root: str | os.PathLike[str], mode: str | StorageMode = StorageMode.RENAME
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self._real_root = Path(os.path.realpath(self.root))
        self.mode = publish_modes.parse_mode(mode)

    def __repr__(self) -> str:
        return f"Storage({str(self.root)!r})"

    # -- confinement -------------------------------------------------------------------------

    def resolve(self, relpath: str | os.PathLike[str], *, what: str = "path") -> Path:
        """Return the absolute path of ``relpath`` inside the root, or raise PathEscapeError."""
        text = os.fspath(relpath)
        if not text or "\x00" in text:
            raise PathEscapeError(f"{what} {text!r} is empty or contains a NUL byte")
        posix = PurePosixPath(text.replace("\\", "/"))
        if posix.is_absolute() or re.match(r"^[A-Za-z]:", text):
            raise PathEscapeError(
                f"{what} {text!r} is absolute; give a path relative to the storage root {self.root}"
            )
        if ".." in posix.parts:
            raise PathEscapeError(f"{what} {text!r} contains '..'; it must stay inside {self.root}")
        candidate = self.root.joinpath(*posix.parts)
        real = Path(os.path.realpath(candidate))
        if real != self._real_root and self._real_root not in real.parents:
            raise PathEscapeError(
                f"{what} {text!r} leads outside the storage root {self.root} (through a symlink)"
            )
        return candidate

    def _rel(self, relpath: str, what: str = "path") -> str:
        """``relpath`` checked by :meth:`resolve`, in its clean POSIX form."""
        return self.relative(self.resolve(relpath, what=what))

    def relative(self, path: Path) -> str:
        """The root-relative POSIX form of an absolute path inside the root."""
        return path.absolute().relative_to(self.root).as_posix()

    # -- well-known places -------------------------------------------------------------------

    def dataset_dir(self, kind: str) -> Path:
        return self.resolve(f"datasets/{kind}")

    def run_path(self, run: str, *parts: str) -> str:
        """Root-relative path of a file of a run, e.g. ``run_path('default', 'report.txt')``."""
        return "/".join(["runs", safe_name(run), *parts])

    def attempt_path(self, item_id: str, token: int) -> str:
        """Root-relative staging folder of one attempt (item id + fencing token)."""
        return f"{STAGING}/{safe_name(item_id)}/t{token}"

    def staging_path(self, item_id: str, token: int, final_rel: str) -> str:
        """Root-relative staging path of ``final_rel`` for one attempt (item id + token): a
        file of the attempt's folder named by the :func:`safe_name` of the clean final path
        (two outputs of an attempt never share a staging name)."""
        final = self._rel(final_rel, what="output path")
        return f"{self.attempt_path(item_id, token)}/{safe_name(final)}"

    # -- writing -----------------------------------------------------------------------------

    def prepare(self, relpath: str, *, what: str = "path") -> Path:
        """Create the folders of ``relpath`` (never through a symlink); its absolute path."""
        rel = self._rel(relpath, what)
        beneath.makedirs(self.root, rel.rpartition("/")[0])
        return self.root / rel

    @contextlib.contextmanager
    def open_atomic(self, relpath: str, mode: str = "wb") -> Iterator[Any]:
        """Write to a temporary file beside ``relpath`` and rename it into place on success.

        The file is opened beneath the root (no symlink followed), created with mode 0o666
        less the umask, and flushed with its folder before this returns. In ``write-once``
        mode the bytes are collected in memory and the file is replaced by delete + exclusive
        create, without a rename (:func:`batchml.publish_modes.write_whole`)."""
        if self.mode is StorageMode.WRITE_ONCE:
            with self._open_whole(relpath, mode) as handle:
                yield handle
            return
        names = beneath.parts(self._rel(relpath))
        with beneath.folder(self.root, names[:-1], create=True) as parent:
            tmp = f".{names[-1]}.{secrets.token_hex(4)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o666, dir_fd=parent)
            try:
                encoding = None if "b" in mode else "utf-8"
                with os.fdopen(fd, mode, encoding=encoding) as handle:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
                os.rename(tmp, names[-1], src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=parent)
                raise
            os.fsync(parent)

    @contextlib.contextmanager
    def _open_whole(self, relpath: str, mode: str) -> Iterator[Any]:
        rel = self._rel(relpath)
        buffer: io.BytesIO | io.StringIO = io.BytesIO() if "b" in mode else io.StringIO()
        yield buffer
        value = buffer.getvalue()
        data = value.encode("utf-8") if isinstance(value, str) else value
        publish_modes.write_whole(self.root, rel, data)

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        with self.open_atomic(relpath, "wb") as handle:
            handle.write(data)
        return self.resolve(relpath)

    def write_text(self, relpath: str, text: str) -> Path:
        return self.write_bytes(relpath, text.encode("utf-8"))

    def read_bytes(self, relpath: str) -> bytes:
        path = self.resolve(relpath)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{relpath}: no such file under {self.root}") from None
        except OSError as exc:
            raise StorageError(f"{relpath}: cannot read ({exc.strerror})") from None

    def exists(self, relpath: str) -> bool:
        return self.resolve(relpath).exists()

    def sha256(self, relpath: str, *, what: str = "path") -> str:
        """The sha256 of a regular file, read beneath the root (no symlink followed)."""
        try:
            return beneath.sha256(self.root, self._rel(relpath, what))
        except FileNotFoundError:
            raise StorageError(f"{relpath}: no such file under {self.root}") from None

    # -- publish after commit ----------------------------------------------------------------

    def seal(self, pubs: Iterable[Publication]) -> None:
        """Flush staged outputs and the folders holding them to stable storage: what the
        commit is about to promise survives a power loss. (The folders above were flushed as
        each was made: :func:`batchml.beneath.open_dir` flushes a new folder's parent.)"""
        flushed: set[str] = set()
        for pub in pubs:
            staged = self._rel(pub.staged, what="staged path")
            beneath.fsync_file(self.root, staged)
            folder = staged.rpartition("/")[0]
            if folder not in flushed:
                beneath.fsync_dir(self.root, beneath.parts(folder))
                flushed.add(folder)

    def publish(self, pub: Publication) -> Path:
        """Move a staged output to its final name. Idempotent; safe to race with another process.

        If the final file already exists with the recorded digest, nothing is done. A final file
        with another digest is replaced (it can only be left over from a forced re-run). The
        rename goes through folder descriptors (a symlink on either path is refused) and the
        final folder is flushed after it.

        In ``write-once`` mode nothing is renamed nor replaced: the staged bytes are copied
        into the final name created exclusively, then the staged file is deleted
        (:func:`batchml.publish_modes.publish_write_once`); a final file with another digest
        is an error naming it, unless it is this output's own interrupted copy."""
        final = self._rel(pub.final, what="output path")
        staged = self._rel(pub.staged, what="staged path")
        if self.mode is StorageMode.WRITE_ONCE:
            publish_modes.publish_write_once(self.root, staged, final, pub.sha256)
            return self.root / final
        if self._move(pub, staged, final, flush=True):
            beneath.rmdir_empty(self.root, staged.rpartition("/")[0], stop=1)
        return self.root / final

    def _move(self, pub: Publication, staged: str, final: str, *, flush: bool) -> bool:
        """Rename one output from ``staged`` to ``final`` (its checked paths; ``rename``
        mode); False if it was published already (by another process, or an earlier call).
        With ``flush=False`` the final folder is left for the caller to flush."""
        if beneath.is_file(self.root, final) and beneath.lstat(self.root, staged) is None:
            if beneath.sha256(self.root, final) != pub.sha256:
                raise StorageError(
                    f"{pub.final}: published file does not match its recorded sha256 "
                    f"{pub.sha256[:12]}…; it was changed after the commit"
                )
            return False
        try:
            beneath.rename(self.root, staged, final, flush=flush)
        except FileNotFoundError:
            if beneath.is_file(self.root, final):  # another process published it meanwhile
                return False
            raise StorageError(
                f"{pub.final}: neither the staged file {pub.staged} nor the final file exists; "
                "the committed output was deleted from the storage root"
            ) from None
        return True

    def is_pending(self, pub: Publication) -> bool:
        """True if a committed output still waits under its staging name (or is missing)."""
        staged = self._rel(pub.staged, what="staged path")
        final = self._rel(pub.final, what="output path")
        return beneath.lstat(self.root, staged) is not None or not beneath.is_file(self.root, final)

    def publish_all(self, pubs: Iterable[Publication]) -> None:
        """:meth:`publish` each of ``pubs`` (one attempt's outputs), with one flush per
        destination folder: every output is renamed first, then each final folder is flushed
        once, after all its renames, before this returns (so before the worker goes on as if
        the outputs were published). Every final folder is flushed, also one whose outputs
        another process renamed meanwhile: that process may not have flushed it yet.

        The durability is :meth:`publish`'s: the staged data was flushed before the commit
        (:meth:`seal`), and a new name is on stable storage when this returns. An error
        names its output; the outputs renamed before it are flushed all the same."""
        pubs = list(pubs)
        if self.mode is StorageMode.WRITE_ONCE:
            for pub in pubs:
                self.publish(pub)
            return
        folders: dict[str, None] = {}  # the final folders, in order
        emptied: dict[str, None] = {}  # the staging folders renamed from
        try:
            for pub in pubs:
                final = self._rel(pub.final, what="output path")
                staged = self._rel(pub.staged, what="staged path")
                if self._move(pub, staged, final, flush=False):
                    emptied[staged.rpartition("/")[0]] = None
                folders[final.rpartition("/")[0]] = None
        finally:
            for folder in folders:
                beneath.fsync_dir(self.root, beneath.parts(folder))
        for folder in emptied:
            beneath.rmdir_empty(self.root, folder, stop=1)

    def discard_attempt(self, item_id: str, token: int) -> None:
        """Remove what one attempt staged (and only that attempt); it never becomes visible.

        Best effort: a folder that cannot be removed is logged and left for the clean-up at
        drain (:func:`batchml.worker.publish.remove_stale_staging`)."""
        try:
            self.discard_staged(safe_name(item_id), token)
        except (StorageError, OSError) as exc:
            log.warning(
                "item %s: could not remove the staging of attempt t%d: %s", item_id, token, exc
            )

    def staged_attempts(self) -> list[tuple[str, int]]:
        """(encoded item id, token) of every attempt folder under ``.staging``."""
        found = []
        for name in beneath.listdir(self.root, STAGING):
            try:
                subs = beneath.listdir(self.root, f"{STAGING}/{name}")
            except StorageError:  # a file or a symlink: not an attempt's folder
                continue
            found += [(name, int(sub[1:])) for sub in subs if re.fullmatch(r"t[0-9]+", sub)]
        return found

    def discard_staged(self, encoded_id: str, token: int) -> None:
        """Remove the attempt folder ``.staging/<encoded_id>/t<token>`` (``staged_attempts``)."""
        item_folder = self._rel(f"{STAGING}/{encoded_id}", what="staging folder")
        beneath.rmtree(self.root, f"{item_folder}/t{token}")
        beneath.rmdir_empty(self.root, item_folder, stop=1)

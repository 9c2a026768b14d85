"""The storage root: confined paths, atomic writes, and publish-after-commit.

Layout (see DESIGN.md)::

    <root>/datasets/training/<day>.parquet
    <root>/datasets/testing/<name>.parquet
    <root>/runs/<run>/checkpoints/v<NNNN>-<day>.npz (+ .sha256)
    <root>/runs/<run>/records/<item-id>.json
    <root>/runs/<run>/predictions/v<NNNN>/<day>.parquet
    <root>/.staging/...                       attempts' outputs, not yet published

Every relative path that comes from a user or a queue item goes through :meth:`Storage.resolve`,
which refuses absolute paths, ``..`` and symlinks that lead outside the root.

Exactly-once outputs: a task writes into a staging path unique to its attempt (item id + fencing
token). Only after the queue accepted the commit is the file renamed to its final name
(:meth:`Storage.publish`). The rename is idempotent and can be redone by anyone holding the
publication record, so a worker killed between commit and rename loses nothing: the next reader
rolls the publication forward.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from batchml.errors import PathEscapeError, StorageError

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@=+-]")


def safe_name(text: str) -> str:
    """A file-name-safe rendering of an item id or run name (``:`` and ``/`` become ``_``)."""
    return _SAFE_NAME.sub("_", text)


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
    """A folder (local or an NFS mount) that holds datasets, checkpoints, records and reports."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self._real_root = Path(os.path.realpath(self.root))

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

    def relative(self, path: Path) -> str:
        """The root-relative POSIX form of an absolute path inside the root."""
        return path.absolute().relative_to(self.root).as_posix()

    # -- well-known places -------------------------------------------------------------------

    def dataset_dir(self, kind: str) -> Path:
        return self.resolve(f"datasets/{kind}")

    def run_path(self, run: str, *parts: str) -> str:
        """Root-relative path of a file of a run, e.g. ``run_path('default', 'report.txt')``."""
        return "/".join(["runs", safe_name(run), *parts])

    def staging_path(self, item_id: str, token: int, final_rel: str) -> str:
        """Root-relative staging path of ``final_rel`` for one attempt (item id + token)."""
        return f".staging/{safe_name(item_id)}.t{token}/{final_rel}"

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_atomic(self, relpath: str, mode: str = "wb") -> Iterator[Any]:
        """Write to a temporary file beside ``relpath`` and rename it into place on success."""
        target = self.resolve(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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

    # -- publish after commit ----------------------------------------------------------------

    def publish(self, pub: Publication) -> Path:
        """Move a staged output to its final name. Idempotent; safe to race with another process.

        If the final file already exists with the recorded digest, nothing is done. A final file
        with another digest is replaced (it can only be left over from a forced re-run).
        """
        final = self.resolve(pub.final, what="output path")
        staged = self.resolve(pub.staged, what="staged path")
        if final.exists() and not staged.exists():
            if sha256_file(final) != pub.sha256:
                raise StorageError(
                    f"{pub.final}: published file does not match its recorded sha256 "
                    f"{pub.sha256[:12]}…; it was changed after the commit"
                )
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staged, final)
        except FileNotFoundError:
            if final.exists():  # another process published it between our checks
                return final
            raise StorageError(
                f"{pub.final}: neither the staged file {pub.staged} nor the final file exists; "
                "the committed output was deleted from the storage root"
            ) from None
        self._prune_empty(staged.parent)
        return final

    def is_pending(self, pub: Publication) -> bool:
        """True if a committed output still waits under its staging name (or is missing)."""
        staged = self.resolve(pub.staged, what="staged path")
        return staged.exists() or not self.resolve(pub.final, what="output path").exists()

    def publish_all(self, pubs: Iterable[Publication]) -> None:
        for pub in pubs:
            self.publish(pub)

    def discard_attempt(self, item_id: str, token: int) -> None:
        """Remove what an abandoned attempt staged; it never becomes visible."""
        folder = self.resolve(f".staging/{safe_name(item_id)}.t{token}")
        shutil.rmtree(folder, ignore_errors=True)

    def _prune_empty(self, folder: Path) -> None:
        staging = self.root / ".staging"
        while folder != staging and staging in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

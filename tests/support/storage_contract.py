"""The storage contract, as one suite every storage mode subclasses unchanged.

A mode's test module does::

    class TestMyMode(StorageContract):
        MODE = StorageMode.MY_MODE
        def interrupt_publish(self, monkeypatch): ...   # make the next publish fail mid-way

Publish after commit, idempotent publish and roll-forward, a refused final file with another
digest, discard of an abandoned attempt, symlink refusal, a publish interrupted mid-way and then
completed, and a rewritten file never left half-written by a failed writer.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from batchml.errors import PathEscapeError, StorageError
from batchml.publish_modes import StorageMode
from batchml.queue.base import ItemSpec, QueueOptions
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.storage import Publication, Storage
from batchml.worker.publish import roll_forward

FINAL = "runs/default/out/a.bin"
DATA = bytes(range(256)) * 4096  # 1 MiB: a copy is more than one write


def stage(storage: Storage, item: str, token: int, final: str, data: bytes) -> Publication:
    """Write ``data`` as attempt (item, token)'s output for ``final``; its publication."""
    staged = storage.staging_path(item, token, final)
    storage.prepare(staged).write_bytes(data)
    pub = Publication(staged=staged, final=final, sha256=hashlib.sha256(data).hexdigest())
    storage.seal([pub])
    return pub


class StorageContract:
    MODE: StorageMode

    def interrupt_publish(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the next publish raise after it started (part of the final may be written)."""
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return Storage(tmp_path / "root", self.MODE)

    def committed(self, storage: Storage, tmp_path: Path, pub: Publication) -> SqliteQueue:
        """A queue where item ``a`` is done with ``pub`` as its output, not yet published."""
        queue = SqliteQueue(tmp_path / "queue.db", QueueOptions())
        queue.push([ItemSpec(payload={"task": "noop"}, id="a")])
        lease = queue.lease("w", 30.0)
        assert lease is not None
        queue.complete("a", lease.token, {}, outputs=[pub])
        return queue

    def test_publish_moves_the_staged_bytes_to_the_final_name(self, storage: Storage) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        assert storage.is_pending(pub) and not (storage.root / FINAL).exists()
        assert storage.publish(pub) == storage.root / FINAL
        assert (storage.root / FINAL).read_bytes() == DATA
        assert not storage.is_pending(pub)
        assert not (storage.root / pub.staged).exists()
        assert storage.staged_attempts() == []  # the emptied attempt folder is pruned

    def test_publish_and_roll_forward_are_idempotent(
        self, storage: Storage, tmp_path: Path
    ) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        queue = self.committed(storage, tmp_path, pub)
        assert roll_forward(storage, queue) == 1
        assert roll_forward(storage, queue) == 0
        storage.publish(pub)
        storage.publish(pub)
        assert (storage.root / FINAL).read_bytes() == DATA
        assert storage.staged_attempts() == []

    def test_a_final_changed_after_the_commit_is_refused_naming_it(self, storage: Storage) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        storage.publish(pub)
        (storage.root / FINAL).write_bytes(b"tampered")
        with pytest.raises(StorageError, match=FINAL):
            storage.publish(pub)
        assert (storage.root / FINAL).read_bytes() == b"tampered"

    def test_a_vanished_output_is_an_error_naming_it(self, storage: Storage) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        (storage.root / pub.staged).unlink()
        with pytest.raises(StorageError, match="neither the staged file"):
            storage.publish(pub)

    def test_discarding_an_attempt_removes_only_its_staging(self, storage: Storage) -> None:
        old = stage(storage, "a", 1, FINAL, b"abandoned")
        live = stage(storage, "a", 2, FINAL, DATA)
        storage.discard_attempt("a", 1)
        assert not (storage.root / old.staged).exists()
        assert (storage.root / live.staged).read_bytes() == DATA
        assert not (storage.root / FINAL).exists()
        assert storage.staged_attempts() == [("a", 2)]

    def test_a_symlinked_final_folder_is_refused_and_nothing_lands_outside(
        self, storage: Storage, tmp_path: Path
    ) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        outside = tmp_path / "outside"
        outside.mkdir()
        (storage.root / "runs/default").mkdir(parents=True)
        os.symlink(outside, storage.root / "runs/default/out")
        with pytest.raises(PathEscapeError):
            storage.publish(pub)
        assert list(outside.iterdir()) == []

    def test_a_symlinked_staged_file_is_refused(self, storage: Storage, tmp_path: Path) -> None:
        secret = tmp_path / "secret"
        secret.write_bytes(DATA)
        pub = stage(storage, "a", 1, FINAL, DATA)
        (storage.root / pub.staged).unlink()
        os.symlink(secret, storage.root / pub.staged)
        with pytest.raises(PathEscapeError):
            storage.publish(pub)
        assert not (storage.root / FINAL).exists()

    def test_an_interrupted_publish_is_detected_then_completed_by_the_roll_forward(
        self, storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        queue = self.committed(storage, tmp_path, pub)
        with monkeypatch.context() as patch:
            self.interrupt_publish(patch)
            with pytest.raises(OSError, match="interrupted"):
                storage.publish(pub)
        final = storage.root / FINAL
        # what a reader can tell: the output is still pending, and no final with its digest
        assert storage.is_pending(pub)
        assert not final.exists() or hashlib.sha256(final.read_bytes()).hexdigest() != pub.sha256
        assert roll_forward(storage, queue) == 1
        assert final.read_bytes() == DATA and not storage.is_pending(pub)
        assert storage.staged_attempts() == []

    def test_a_failed_rewrite_leaves_the_previous_file_whole(self, storage: Storage) -> None:
        storage.write_text("runs/default/report.txt", "first\n")
        storage.write_text("runs/default/report.txt", "second\n")
        assert (storage.root / "runs/default/report.txt").read_text() == "second\n"
        with pytest.raises(RuntimeError), storage.open_atomic("runs/default/report.txt") as out:
            out.write(b"half of a thi")
            raise RuntimeError("the writer failed")
        assert (storage.root / "runs/default/report.txt").read_text() == "second\n"
        assert os.listdir(storage.root / "runs/default") == ["report.txt"]

    def test_a_rewrite_through_a_symlink_is_refused(self, storage: Storage, tmp_path: Path) -> None:
        victim = tmp_path / "victim"
        victim.write_text("keep\n")
        (storage.root / "runs/default").mkdir(parents=True)
        os.symlink(victim, storage.root / "runs/default/report.txt")
        with pytest.raises(PathEscapeError):
            storage.write_text("runs/default/report.txt", "x\n")
        assert victim.read_text() == "keep\n"

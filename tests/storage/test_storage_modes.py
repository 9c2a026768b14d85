"""Both storage modes keep the storage contract; write-once publishes without any rename."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchml import beneath, exitcodes
from batchml.cli.main import run as cli_run
from batchml.errors import ConfigError, StorageError
from batchml.fraud.models import checkpoint
from batchml.publish_modes import StorageMode, marker_path
from batchml.queue.base import ItemSpec, QueueOptions, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.report import write_reports
from batchml.settings import Settings
from batchml.storage import Storage
from batchml.worker.local import worker_command
from batchml.worker.publish import roll_forward
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.fraud_env import make_env, train
from tests.support.storage_contract import DATA, FINAL, StorageContract, stage


class TestRenameMode(StorageContract):
    MODE = StorageMode.RENAME

    def interrupt_publish(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def interrupted(*args: Any, **kwargs: Any) -> None:
            raise OSError("interrupted before the rename")

        monkeypatch.setattr(beneath, "rename", interrupted)


class TestWriteOnceMode(StorageContract):
    MODE = StorageMode.WRITE_ONCE

    def interrupt_publish(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The copy writes half of its first block under the final name, then fails."""

        def half_then_fail(fd: int, data: bytes) -> None:
            os.write(fd, data[: len(data) // 2])
            raise OSError("interrupted mid-copy")

        monkeypatch.setattr(beneath, "write_all", half_then_fail)

    def test_a_half_copied_checkpoint_is_refused_by_its_reader_then_rolled_forward(
        self, storage: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        with monkeypatch.context() as patch:
            self.interrupt_publish(patch)
            with pytest.raises(OSError, match="interrupted"):
                storage.publish(pub)
        final = storage.root / FINAL
        assert 0 < final.stat().st_size < len(DATA)  # the half copy is there, under its name
        with pytest.raises(Exception, match="does not match the sha256"):
            checkpoint.load_file(final, pub.sha256)
        assert storage.publish(pub) == final  # what the lineage reader does before loading
        assert final.read_bytes() == DATA

    def test_a_publisher_racing_one_that_finishes_meanwhile_never_loses_the_output(
        self, storage: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """B finds A's half copy and deletes it; in between, A finished and removed the staged
        copy. B still holds the verified bytes and writes the whole output again."""
        pub = stage(storage, "a", 1, FINAL, DATA)
        with monkeypatch.context() as patch:
            self.interrupt_publish(patch)
            with pytest.raises(OSError, match="interrupted"):
                storage.publish(pub)  # A, half-way (the half copy and its marker are there)
        real_unlink = beneath.unlink
        final, staged = storage.root / FINAL, storage.root / pub.staged

        def a_finishes_first(root: Path, relpath: str) -> None:
            if relpath == FINAL and staged.exists():
                final.write_bytes(DATA)  # A's copy completes ...
                staged.unlink()  # ... and A removes the staged copy
            real_unlink(root, relpath)

        monkeypatch.setattr(beneath, "unlink", a_finishes_first)
        storage.publish(pub)  # B
        assert final.read_bytes() == DATA and not storage.is_pending(pub)

    def test_a_foreign_file_at_the_final_name_is_never_overwritten(self, storage: Storage) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        (storage.root / FINAL).parent.mkdir(parents=True)
        (storage.root / FINAL).write_bytes(b"someone else's")
        with pytest.raises(StorageError, match=rf"{FINAL}: already exists.*never overwrites"):
            storage.publish(pub)
        assert (storage.root / FINAL).read_bytes() == b"someone else's"
        assert storage.is_pending(pub)
        (storage.root / FINAL).unlink()  # the error's advice: remove the leftover
        storage.publish(pub)
        assert (storage.root / FINAL).read_bytes() == DATA

    def test_staged_bytes_changed_after_the_commit_are_not_published(
        self, storage: Storage
    ) -> None:
        pub = stage(storage, "a", 1, FINAL, DATA)
        (storage.root / pub.staged).write_bytes(b"changed")
        with pytest.raises(StorageError, match="does not match its recorded sha256"):
            storage.publish(pub)
        assert not (storage.root / FINAL).exists()

    def test_a_publish_that_finished_its_copy_is_completed_without_a_second_copy(
        self, storage: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash after the copy, before the staged file was deleted: only the clean-up is left."""
        pub = stage(storage, "a", 1, FINAL, DATA)
        (storage.root / FINAL).parent.mkdir(parents=True)
        (storage.root / FINAL).write_bytes(DATA)
        marker = storage.root / marker_path(pub.staged, FINAL)
        marker.parent.mkdir(parents=True)
        marker.touch()
        monkeypatch.setattr(beneath, "write_exclusive", _never)
        storage.publish(pub)
        assert not (storage.root / pub.staged).exists() and not marker.exists()
        assert storage.staged_attempts() == []


def _never(*args: Any) -> str:
    raise AssertionError("copied again")


def test_an_unknown_storage_mode_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--storage-mode 'gcs'.*rename, write-once"):
        Storage(tmp_path, "gcs")


def test_the_local_worker_spawner_passes_the_mode_on(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, storage_mode=StorageMode.WRITE_ONCE)
    command = worker_command(settings)
    assert command[command.index("--storage-mode") + 1] == "write-once"
    assert settings.storage().mode is StorageMode.WRITE_ONCE


# -- no rename at all in write-once mode ------------------------------------------------------


def forbid_renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Make every way of renaming a file raise (and record that it was tried)."""
    tried: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        tried.append(args)
        raise AssertionError(f"a rename in write-once mode: {args}")

    for module, name in [
        (os, "rename"), (os, "replace"), (os, "renames"), (shutil, "move"),
        (beneath, "rename"), (Path, "rename"), (Path, "replace"),
    ]:  # fmt: skip
        monkeypatch.setattr(module, name, refuse)
    return tried


def test_a_worker_runs_sample_tasks_and_two_training_days_without_a_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path / "root")
    env.settings = dataclasses.replace(
        env.settings, storage_mode=StorageMode.WRITE_ONCE, tasks=SAMPLE_TASKS
    )
    env.storage = env.settings.storage()
    tried = forbid_renames(monkeypatch)
    env.queue.push(
        [
            ItemSpec(payload={"task": "tests.sample_tasks:write_output", "name": n}, id=n)
            for n in ("a", "b")
        ]
    )
    assert train(env, days=env.train_days[:2]) == [exitcodes.OK]
    report = write_reports(env.storage, "default", env.queue)
    write_reports(env.storage, "default", env.queue)  # a rewrite: delete + create
    assert tried == []
    assert all(item.state == State.DONE for item in env.queue.items())
    assert (env.root / "runs/default/out/b.txt").read_text() == "b by w0\n"
    chain = env.queue.lineage("default")
    assert [h.version for h in chain] == [1, 2]
    for head in chain:
        assert head.checkpoint is not None
        data = (env.root / head.checkpoint.final).read_bytes()
        assert hashlib.sha256(data).hexdigest() == head.checkpoint.sha256
    assert len(report["versions"]) == 2
    written = json.loads((env.root / "runs/default/report.json").read_text())
    assert written["versions"] == json.loads(json.dumps(report["versions"]))
    assert env.storage.staged_attempts() == []


def test_the_cli_worker_reads_batchml_storage_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BATCHML_STORAGE_MODE=write-once batchml worker``: the items complete, nothing renamed."""
    root = tmp_path / "root"
    queue = SqliteQueue(root / "queue.db", QueueOptions())
    queue.push([ItemSpec(payload={"task": "tests.sample_tasks:write_output", "name": "a"}, id="a")])
    monkeypatch.setenv("BATCHML_STORAGE_MODE", "write-once")
    tried = forbid_renames(monkeypatch)
    code = cli_run(["--root", str(root), "--tasks", "tests.sample_tasks", "worker", "--grace", "0"])
    assert code == exitcodes.OK and tried == []
    assert (root / "runs/default/out/a.txt").read_text().startswith("a by ")
    assert queue.get("a").state == State.DONE


KILLED_MID_COPY = """
import os, signal, sys
from batchml import beneath
from batchml.storage import Publication, Storage

def half_then_die(fd, data):
    os.write(fd, data[: len(data) // 2])
    os.fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)

beneath.write_all = half_then_die
staged, final, sha = sys.argv[2:5]
Storage(sys.argv[1], "write-once").publish(Publication(staged=staged, final=final, sha256=sha))
"""


def test_a_publisher_killed_mid_copy_is_rolled_forward(tmp_path: Path) -> None:
    """A real process SIGKILLed half-way through writing the final: the next reader sees the
    output as not yet published, and the roll-forward writes it whole."""
    storage = Storage(tmp_path / "root", StorageMode.WRITE_ONCE)
    pub = stage(storage, "a", 1, FINAL, DATA)
    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions())
    queue.push([ItemSpec(payload={"task": "noop"}, id="a")])
    lease = queue.lease("w", 30.0)
    assert lease is not None
    queue.complete("a", lease.token, {}, outputs=[pub])
    args = [str(storage.root), pub.staged, pub.final, pub.sha256]
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_COPY, *args], check=False)
    assert proc.returncode == -signal.SIGKILL
    final = storage.root / FINAL
    assert 0 < final.stat().st_size < len(DATA) and storage.is_pending(pub)
    assert roll_forward(storage, queue) == 1
    assert final.read_bytes() == DATA and storage.staged_attempts() == []

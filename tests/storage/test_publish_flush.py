"""Publishing an attempt's outputs: one flush per destination folder, after all its renames.

A power loss cannot be simulated here, so these tests check the order that makes one harmless,
by watching ``os.fsync`` and ``os.rename``: every staged file is flushed before the commit,
every final folder is flushed after the last rename into it and before the worker goes on,
and no final folder is flushed twice for one attempt (the old code flushed it after each
rename). Staging is flat: an attempt's outputs are files of its one folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.queue.base import ItemSpec, RetryPolicy
from batchml.queue.sqlite.queue import QueueOptions, SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Publication, Storage
from batchml.tasks import TaskContext, task
from batchml.worker.loop import Worker

Events = list[tuple[str, str]]  # ("fsync", path) or ("rename", destination path)

CHECKPOINTS = "runs/default/checkpoints"


@task
def checkpoint_like(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Two outputs in one folder (a checkpoint and its .sha256), as ``fraud.train`` writes."""
    ctx.output(f"{CHECKPOINTS}/v0001.npz").write_bytes(b"model")
    ctx.output(f"{CHECKPOINTS}/v0001.npz.sha256").write_text("digest  v0001.npz\n")
    return {"name": payload["name"]}


def watch(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Record every fsync (the path of its descriptor) and rename (its destination)."""
    events: Events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: Any, dst: Any, *, src_dir_fd: Any = None, dst_dir_fd: Any = None) -> None:
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        folder = os.readlink(f"/proc/self/fd/{dst_dir_fd}") if dst_dir_fd is not None else ""
        events.append(("rename", os.path.join(folder, os.fspath(dst))))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return events


def assert_each_final_folder_flushed_once_after_its_renames(
    events: Events, finals: list[Path]
) -> None:
    for folder in {f.parent for f in finals}:
        flushes = [
            i for i, (op, path) in enumerate(events) if op == "fsync" and path == str(folder)
        ]
        into = {str(f) for f in finals if f.parent == folder}
        renames = [i for i, (op, path) in enumerate(events) if op == "rename" and path in into]
        assert len(flushes) == 1, (folder, events)
        assert renames and flushes[0] > max(renames), (folder, events)


def stage(storage: Storage, item: str, final: str, data: bytes) -> Publication:
    rel = storage.staging_path(item, 1, final)
    storage.prepare(rel).write_bytes(data)
    return Publication(staged=rel, final=final, sha256=storage.sha256(rel))


def test_publish_all_flushes_each_final_folder_once_after_all_its_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an attempt with two outputs in one folder and one in another, sealed
    storage = Storage(tmp_path / "root")
    finals = [f"{CHECKPOINTS}/v1.npz", f"{CHECKPOINTS}/v1.npz.sha256", "runs/default/r/a.json"]
    pubs = [stage(storage, "a", final, final.encode()) for final in finals]
    assert all(p.staged.count("/") == 3 for p in pubs)  # flat: .staging/a/t1/<name>
    storage.seal(pubs)
    # When it is published
    events = watch(monkeypatch)
    storage.publish_all(pubs)
    # Then each final folder is flushed once, after all its renames
    root = Path(os.path.realpath(storage.root))
    assert_each_final_folder_flushed_once_after_its_renames(events, [root / f for f in finals])
    assert all((root / f).read_bytes() == f.encode() for f in finals)
    assert not (root / ".staging/a").exists()


def test_publish_all_flushes_what_it_renamed_before_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two outputs in one folder, the second one's staged file deleted after the commit
    storage = Storage(tmp_path / "root")
    good = stage(storage, "b", f"{CHECKPOINTS}/v1.npz", b"kept")
    lost = stage(storage, "b", f"{CHECKPOINTS}/v1.npz.sha256", b"lost")
    (storage.root / lost.staged).unlink()
    events = watch(monkeypatch)
    # When they are published, the error names the lost one
    with pytest.raises(Exception, match=r"v1\.npz\.sha256: neither the staged file"):
        storage.publish_all([good, lost])
    # Then the first one's rename was flushed all the same
    root = Path(os.path.realpath(storage.root))
    assert_each_final_folder_flushed_once_after_its_renames(events, [root / good.final])


def test_a_worker_flushes_each_final_folder_once_after_its_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an item whose attempt stages two outputs in one folder (and then its record)
    settings = Settings(
        root=tmp_path / "root",
        tasks=("tests.storage.test_publish_flush",),
        worker=WorkerSettings(lease_ttl=30.0, poll_interval=0.05, grace=0.0),
    )
    storage = settings.storage()
    queue = SqliteQueue(tmp_path / "root" / "queue.db", QueueOptions(retry=RetryPolicy()))
    body = {"task": "tests.storage.test_publish_flush:checkpoint_like"}
    queue.push([ItemSpec(payload={**body, "name": "one"}, id="one")])
    events = watch(monkeypatch)
    # When one worker runs it
    assert Worker(queue, storage, settings, "w").run() == exitcodes.OK
    # Then the checkpoint folder and the records folder are each flushed once, after the
    # renames into them, and every staged file was flushed before the first of those renames
    root = Path(os.path.realpath(storage.root))
    finals = [
        root / CHECKPOINTS / "v0001.npz",
        root / CHECKPOINTS / "v0001.npz.sha256",
        root / "runs/default/records/one.json",
    ]
    assert_each_final_folder_flushed_once_after_its_renames(events, finals)
    names = set(map(str, finals))
    first = min(i for i, event in enumerate(events) if event[0] == "rename" and event[1] in names)
    staged = {path for op, path in events[:first] if op == "fsync" and "/.staging/" in path}
    files = {str(root / storage.staging_path("one", 1, storage.relative(f))) for f in finals}
    assert files <= staged and str(root / ".staging/one/t1") in staged  # data, then its folder

"""Storage integrity: injective names, per-attempt staging, writes beneath the root, durability,
stale staging removal and the umask (issue 10, parts 4-6)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchml import exitcodes
from batchml.errors import ConfigError, PathEscapeError
from batchml.fraud.models import checkpoint
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Publication, Storage, safe_name
from batchml.tasks.context import TaskContext
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker
from batchml.worker.publish import roll_forward
from tests.fraud.test_datasets import TUTORIAL
from tests.fraud.test_tutorial_flow import DAYS
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.cli import run_cli

Env = tuple[SqliteQueue, Storage, Settings]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    settings = Settings(
        root=tmp_path / "root",
        tasks=SAMPLE_TASKS,
        worker=WorkerSettings(lease_ttl=5.0, poll_interval=0.05, grace=0.0),
    )
    retry = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_factor=1.0)
    queue = SqliteQueue(tmp_path / "root" / "queue.db", QueueOptions(retry=retry))
    return queue, settings.storage(), settings


def task(name: str, item_id: str, **payload: object) -> ItemSpec:
    body = {"task": f"tests.sample_tasks:{name}", "name": item_id.replace(":", "-"), **payload}
    return ItemSpec(payload=body, id=item_id, max_attempts=1)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# -- injective names ---------------------------------------------------------------------------


def test_names_differing_only_in_punctuation_get_different_folders() -> None:
    assert safe_name("exp:1") == "exp%3A1" and safe_name("exp_1") == "exp_1"
    assert len({safe_name(n) for n in ["c:1", "c_1", "c/1", "c 1", "c%3A1", "c.1"]}) == 6
    for usual in ["default", "2018-04-01", "exp-2", "v1.2", "a@b=c+d"]:
        assert safe_name(usual) == usual  # names the old code kept as they were do not move
    for dots in [".", "..", ".hidden", ""]:
        assert safe_name(dots) not in (".", "..", "") and not safe_name(dots).startswith(".")


@given(st.text(max_size=300), st.text(max_size=300))
def test_safe_name_is_injective_and_one_short_component(a: str, b: str) -> None:
    na, nb = safe_name(a), safe_name(b)
    assert (na == nb) == (a == b)
    assert "/" not in na and "\x00" not in na and na not in (".", "..") and 0 < len(na) <= 200


def test_run_names_are_checked_with_the_rule_in_the_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for ok in ["exp:1", "exp_1", "a b", "été", ".x"]:
        assert Settings(run=ok).run == ok
    for bad in ["", "a/b", "tab\there", "nl\n", "x" * 129]:
        with pytest.raises(ConfigError, match="1-128 characters with no '/' and no control"):
            Settings(run=bad)
    refused = run_cli(capsys, "--root", str(tmp_path), "--run", "a\x1bb", "queue", "status")
    assert refused.code == exitcodes.CONFIG and "no control characters" in refused.err


@pytest.mark.timeout(120)
def test_runs_exp_colon_1_and_exp_underscore_1_keep_separate_intact_lineages(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two runs whose names differ only in ':' vs '_', pushed through the CLI and trained by
    two worker processes at once: each keeps its own checkpoints (sha256 as the lineage
    recorded), records and report. The old code wrote both into runs/exp_1/, one replacing the
    other's checkpoints and records."""
    root = tmp_path / "root"
    cli = ("--root", str(root))
    assert run_cli(capsys, *cli, "data", "import", "--trust-pickle", str(TUTORIAL)).code == 0
    days = ("--end", DAYS[1])  # two days per run are enough to collide
    assert run_cli(capsys, *cli, "--run", "exp:1", "queue", "push", *days).code == 0
    assert run_cli(capsys, *cli, "--run", "exp_1", "queue", "push", *days).code == 0
    settings = Settings(root=root)
    procs = spawn_workers(settings, 2, tmp_path / "logs", ["--poll", "0.05"])
    assert [p.wait(timeout=90) for p in procs] == [exitcodes.OK, exitcodes.OK]

    queue = open_queue(settings.resolved_queue_url)
    runs = [("exp:1", "exp%3A1"), ("exp_1", "exp_1")]
    for run, _ in runs:  # intact: every checkpoint is the one its lineage recorded
        chain = queue.lineage(run)
        assert [h.version for h in chain] == [1, 2]
        for head in chain:
            assert head.checkpoint is not None
            path = root / head.checkpoint.final
            assert hashlib.sha256(path.read_bytes()).hexdigest() == head.checkpoint.sha256, run
            _, meta = checkpoint.load_file(path, head.checkpoint.sha256)
            assert meta["lineage"]["run"] == run
    for run, folder in runs:  # separate: each run's files under its own folder
        assert all(h.checkpoint and h.checkpoint.final.startswith(f"runs/{folder}/checkpoints/")
                   for h in queue.lineage(run))  # fmt: skip
        records = [json.loads(p.read_text()) for p in (root / "runs" / folder).glob("records/*")]
        assert {r["run"] for r in records} == {run}
        trains = sorted(r["item_id"] for r in records if r["task"] == "fraud.train")
        assert trains == [f"train:{run}:{day}" for day in DAYS[:2]]
        report = (root / "runs" / folder / "report.txt").read_text()
        assert report.count("Training dataset:") == 2


# -- staging per item and attempt --------------------------------------------------------------


def test_a_failing_namesake_does_not_discard_a_live_attempts_staging(
    env: Env, tmp_path: Path
) -> None:
    """Item 'c:1' fails while 'c_1' holds its lease with an output staged: 'c_1' still commits
    and publishes it. (The old code staged both under .staging/c_1.t1, and the failure of
    'c:1' deleted the folder of 'c_1'.)"""
    queue, storage, settings = env
    started, go = tmp_path / "started", tmp_path / "go"
    queue.push([task("stage_and_wait", "c_1", started_marker=str(started), go=str(go))])
    holder = Worker(queue, storage, settings.with_worker(max_items=1), "holder")
    thread = threading.Thread(target=holder.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists(), "c_1 never started"
        queue.push([task("always_fail", "c:1")])
        failing = Worker(queue, storage, settings.with_worker(max_items=1), "failing")
        assert failing.run() == exitcodes.OK
        assert queue.get("c:1").state == State.DEAD
        assert queue.get("c_1").state == State.LEASED
    finally:
        go.write_text("go")
        thread.join(timeout=30)
    assert queue.get("c_1").state == State.DONE, queue.get("c_1").last_error
    assert (storage.root / "runs/default/out/c_1.txt").read_text() == "c_1 staged by holder\n"
    assert not (storage.root / "runs/default/out/c-1.txt").exists()  # c:1's never published


# -- writes beneath the root -------------------------------------------------------------------


def test_a_task_that_swaps_its_staging_folder_for_a_symlink_fails_and_publishes_nothing(
    env: Env, tmp_path: Path
) -> None:
    """The task replaces its staging folder with a symlink to a folder outside the root and
    writes through it (that write is its own). The worker refuses to hash, commit or publish
    through the symlink: the item is dead naming the path, nothing of the worker's lands
    outside, and the discard removes the symlink without following it. (The old code hashed
    through the symlink and committed; the publish then raised after the commit.)"""
    queue, storage, settings = env
    outside = tmp_path / "outside"
    outside.mkdir()
    queue.push([task("swap_staging_for_symlink", "swap", outside=str(outside))])
    assert Worker(queue, storage, settings, "w").run() == exitcodes.DEAD_ITEMS
    item = queue.get("swap")
    assert item.state == State.DEAD and item.outputs == ()
    error = item.last_error or ""
    assert "PathEscapeError" in error and "symlink" in error
    assert ".staging/swap/t1" in error
    assert files_under(outside) == ["runs%2Fdefault%2Fout%2Fswap.txt"]  # the task's write only
    assert not (storage.root / "runs/default/out").exists()
    assert not (storage.root / ".staging/swap").exists()


@pytest.fixture
def swap_after_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[Path], Path]]:
    """``arm(folder)``: the next time the path check looks at something under ``folder``, the
    folder is swapped for a symlink to an empty folder outside the root, just after the check
    passed (the time-of-check-to-time-of-use race, made deterministic). Returns that folder."""
    real_realpath = os.path.realpath
    armed: list[Path] = []
    outside = tmp_path / "outside"
    outside.mkdir()

    def realpath(path: Any, **kwargs: Any) -> Any:
        result = real_realpath(path, **kwargs)
        if armed and str(path).startswith(str(armed[0]) + os.sep):
            folder = armed.pop()
            folder.mkdir(parents=True, exist_ok=True)
            folder.rename(folder.with_name(folder.name + ".moved"))
            os.symlink(outside, folder)
        return result

    def arm(folder: Path) -> Path:
        armed.append(folder)
        return outside

    monkeypatch.setattr(os.path, "realpath", realpath)
    yield arm
    assert not armed, "the swap never happened: the test proved nothing"


def staged(storage: Storage, item_id: str, token: int, final: str, text: str) -> Publication:
    rel = storage.staging_path(item_id, token, final)
    path = storage.prepare(rel)
    path.write_text(text)
    return Publication(staged=rel, final=final, sha256=storage.sha256(rel))


def test_publish_refuses_an_output_folder_swapped_for_a_symlink_after_the_check(
    env: Env, swap_after_check: Callable[[Path], Path]
) -> None:
    _, storage, _ = env
    pub = staged(storage, "p", 1, "runs/r/out/a.txt", "committed")
    outside = swap_after_check(storage.root / "runs/r/out")
    with pytest.raises(PathEscapeError, match="runs/r/out: is a symlink"):
        storage.publish(pub)
    assert files_under(outside) == []  # the old code renamed the file out of the root
    assert (storage.root / pub.staged).read_text() == "committed"  # still there to retry


def test_atomic_write_refuses_a_folder_swapped_for_a_symlink_after_the_check(
    env: Env, swap_after_check: Callable[[Path], Path]
) -> None:
    _, storage, _ = env
    outside = swap_after_check(storage.root / "runs/r")
    with pytest.raises(PathEscapeError, match="symlink"):
        storage.write_text("runs/r/report.txt", "report\n")
    assert files_under(outside) == []  # the old code wrote the report in there, then refused


def test_output_folders_are_not_made_through_a_symlink_swapped_in_after_the_check(
    env: Env, swap_after_check: Callable[[Path], Path]
) -> None:
    queue, storage, _ = env
    queue.push([task("write_output", "o")])
    lease = queue.lease("w", 30)
    assert lease is not None
    ctx = TaskContext(
        item=lease.item, token=lease.token, run="default", worker_id="w", storage=storage,
        queue=queue, log=logging.getLogger("test"),
    )  # fmt: skip
    outside = swap_after_check(storage.root / storage.attempt_path("o", lease.token))
    with pytest.raises(PathEscapeError, match="is a symlink"):
        ctx.output("runs/default/out/o.txt")
    assert list(outside.iterdir()) == []  # nothing made nor written through the symlink


def test_a_symlink_inside_the_root_is_read_through_but_never_written_through(
    env: Env,
) -> None:
    _, storage, _ = env
    (storage.root / "real").mkdir(parents=True)
    (storage.root / "real/x.txt").write_text("x")
    os.symlink(storage.root / "real", storage.root / "alias")
    assert storage.read_bytes("alias/x.txt") == b"x"
    with pytest.raises(PathEscapeError, match="alias: is a symlink"):
        storage.write_text("alias/y.txt", "y")


# -- durable before committed ------------------------------------------------------------------


def test_staged_files_and_their_folders_are_fsynced_before_the_commit(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss cannot be simulated here, so this checks what makes one harmless: every
    staged file, and every folder from the root down to it, is fsynced before the queue is
    asked to commit; the output folder is fsynced after the rename. (The old code fsynced
    no staged file and no folder.)"""
    queue, storage, settings = env
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    at_commit: list[list[str]] = []
    real_complete, real_complete_and_lease = queue.complete, queue.complete_and_lease

    def complete(*args: Any, **kwargs: Any) -> Any:
        at_commit.append(list(synced))
        return real_complete(*args, **kwargs)

    def complete_and_lease(*args: Any, **kwargs: Any) -> Any:
        at_commit.append(list(synced))
        return real_complete_and_lease(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(queue, "complete", complete)
    monkeypatch.setattr(queue, "complete_and_lease", complete_and_lease)
    queue.push([task("write_output", "d")])
    assert Worker(queue, storage, settings, "w").run() == exitcodes.OK
    [before] = at_commit
    root = Path(os.path.realpath(storage.root))
    for final in ["runs/default/out/d.txt", "runs/default/records/d.json"]:
        path = root / storage.staging_path("d", 1, final)
        assert str(path) in before, path
        for folder in path.parents:
            assert str(folder) in before, folder
            if folder == root:
                break
    after = synced[len(before) :]
    assert str(root / "runs/default/out") in after and str(root / "runs/default/records") in after


# -- stale staging -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_killed_workers_staging_folder_is_removed_once_the_queue_is_drained(
    env: Env, tmp_path: Path
) -> None:
    """A worker process is SIGKILLed with an output staged; the item's next attempt commits.
    The dead attempt's folder is removed when the queue is drained (the old code kept it)."""
    queue, storage, settings = env
    started = tmp_path / "started"
    spec = task("stage_and_wait", "k:1", started_marker=str(started), go=str(tmp_path / "go"))
    queue.push([replace(spec, max_attempts=3)])
    queue.push([ItemSpec(payload={"task": "tests.sample_tasks:noop"}, id="other")])
    [proc] = spawn_workers(settings, 1, tmp_path / "logs", ["--lease-ttl", "1", "--poll", "0.05"])
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert started.exists(), (tmp_path / "logs/worker-0.log").read_text()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    dead_attempt = storage.root / storage.staging_path("k:1", 1, "runs/default/out/k-1.txt")
    assert dead_attempt.read_text() == f"k-1 staged by {queue.get('k:1').worker}\n"
    (tmp_path / "go").write_text("go")  # the next attempt does not wait
    assert Worker(queue, storage, settings, "w2").run() == exitcodes.OK
    item = queue.get("k:1")
    assert item.state == State.DONE and item.token == 2
    assert (storage.root / "runs/default/out/k-1.txt").read_text() == "k-1 staged by w2\n"
    assert not dead_attempt.exists()
    assert list((storage.root / ".staging").iterdir()) == []  # the old code kept k:1's folder


def test_stale_removal_keeps_live_leases_and_committed_outputs_not_yet_published(
    env: Env,
) -> None:
    queue, storage, _ = env
    queue.push([task("noop", n) for n in ["live", "pending", "failed", "finished"]])
    leases = {}
    for _ in range(4):
        lease = queue.lease("w", 60)
        assert lease is not None
        leases[lease.item.id] = lease
    folders = {n: storage.root / storage.attempt_path(n, 1) for n in leases}
    for n in leases:
        staged(storage, n, 1, f"runs/default/out/{n}.txt", n)
    # "live": a stale folder of an older token beside the live attempt's
    old = staged(storage, "live", 0, "runs/default/out/live.txt", "old")
    # "pending": committed, but its killed worker never renamed the output
    pub = Publication(
        staged=storage.staging_path("pending", 1, "runs/default/out/pending.txt"),
        final="runs/default/out/pending.txt",
        sha256=storage.sha256(storage.staging_path("pending", 1, "runs/default/out/pending.txt")),
    )
    queue.complete("pending", 1, {}, outputs=[pub])
    queue.fail("failed", 1, "boom")  # max_attempts 1: dead
    queue.complete("finished", 1, {})
    staged(storage, "purged-long-ago", 3, "runs/default/out/x.txt", "x")

    roll_forward(storage, queue)

    assert (folders["live"] / "runs%2Fdefault%2Fout%2Flive.txt").read_text() == "live"
    assert not (storage.root / old.staged).exists()
    assert (storage.root / "runs/default/out/pending.txt").read_text() == "pending"
    assert sorted(p.name for p in (storage.root / ".staging").iterdir()) == ["live"]
    assert [p.name for p in (storage.root / ".staging/live").iterdir()] == ["t1"]


# -- umask -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(env: Env, umask: int, mode: int) -> None:
    """Datasets, reports and records are written with mode 0o666 less the umask (the old
    code's temporary files were always 0o600)."""
    _, storage, _ = env
    previous = os.umask(umask)
    try:
        path = storage.write_text("runs/r/report.txt", "hello\n")
        folder_mode = (storage.root / "runs/r").stat().st_mode & 0o777
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert folder_mode == 0o777 & ~umask

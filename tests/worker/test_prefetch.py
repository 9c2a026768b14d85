"""``--prefetch N``: a worker leases N items in one call, runs them in turn, and commits the
finished ones with the next N leases in one call; held leases are renewed, given back on a stop,
and reclaimed by another worker after a SIGKILL."""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.queue import open_queue
from batchml.queue.base import QueueOptions, RetryPolicy, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Storage
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker
from tests.sample_tasks import SAMPLE_TASKS
from tests.worker.test_worker import item


@pytest.fixture
def env(tmp_path: Path) -> tuple[SqliteQueue, Storage, Settings]:
    settings = Settings(
        root=tmp_path / "root",
        worker=WorkerSettings(lease_ttl=5.0, poll_interval=0.05, grace=0.0, prefetch=4),
        tasks=SAMPLE_TASKS,
    )
    retry = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_factor=1.0)
    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=retry))
    return queue, settings.storage(), settings


def _record_calls(queue: Any, calls: list[str], *names: str) -> None:
    for name in names:
        real = getattr(queue, name)

        def recorded(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        setattr(queue, name, recorded)


def test_a_prefetching_worker_pays_one_queue_call_per_batch(env) -> None:  # type: ignore[no-untyped-def]
    """Given ten items and --prefetch 4, then the worker leases 4, commits them with the next 4
    leases in one call, and so on: 4 calls for 10 items, each item run once and published."""
    queue, storage, settings = env
    names = [f"i{k}" for k in range(10)]
    queue.push([item("write_output", n) for n in names])
    calls: list[str] = []
    _record_calls(queue, calls, "lease", "lease_many", "complete", "complete_and_lease_many")
    assert Worker(queue, storage, settings, "w1").run() == exitcodes.OK
    assert calls == ["lease_many", *["complete_and_lease_many"] * 3]
    for n in names:
        got = queue.get(n)
        assert got.state == State.DONE and got.attempts == 1 and got.result == {"name": n}
        assert (storage.root / f"runs/default/out/{n}.txt").read_text() == f"{n} by w1\n"
        assert (storage.root / f"runs/default/records/{n}.json").exists()
    assert [h.outcome for h in queue.history()] == ["done"] * 10


def test_failures_in_a_batch_are_retried_and_the_rest_commit(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    queue.push(
        [item("write_output", "a"), item("always_fail", "poison"), item("write_output", "b")]
    )
    assert Worker(queue, storage, settings, "w1").run() == exitcodes.DEAD_ITEMS
    assert queue.get("poison").state == State.DEAD and queue.get("poison").attempts == 3
    assert queue.get("a").state == queue.get("b").state == State.DONE
    assert not (storage.root / "runs/default/out/never.txt").exists()


def test_a_stop_commits_what_finished_and_gives_back_what_never_started(env) -> None:  # type: ignore[no-untyped-def]
    """Given SIGTERM (stop) while the second of four prefetched items runs, then the first two
    are committed and published, and the last two are released untouched (not attempts)."""
    queue, storage, settings = env
    names = ["a", "b", "c", "d", "e"]
    queue.push([item("write_output", n) for n in names])
    w = Worker(queue, storage, settings, "w1")
    real = w._run_task

    def run_then_stop(ctx: Any) -> Any:
        result = real(ctx)
        if ctx.item.id == "b":
            w.stop()
        return result

    w._run_task = run_then_stop  # type: ignore[method-assign]
    assert w.run() == exitcodes.TERMINATED
    assert queue.get("a").state == queue.get("b").state == State.DONE
    assert (storage.root / "runs/default/out/b.txt").exists()
    for n in ("c", "d"):
        got = queue.get(n)
        assert got.state == State.READY and got.attempts == 0 and got.token == 1
    assert queue.get("e").state == State.READY and queue.get("e").token == 0
    assert sorted(h.outcome for h in queue.history()) == ["done", "done", "released", "released"]


def test_prefetched_leases_are_renewed_while_they_wait(env) -> None:  # type: ignore[no-untyped-def]
    """Given a 1 s lease and four items of 0.6 s each prefetched at once, then the last waits
    1.8 s for its turn, past its first deadline: it is renewed meanwhile, never reclaimed."""
    queue, storage, settings = env
    settings = settings.with_worker(lease_ttl=1.0)
    queue.push([item("slow_write", f"s{k}", seconds=0.6) for k in range(4)])
    assert Worker(queue, storage, settings, "w1").run() == exitcodes.OK
    assert all(queue.get(f"s{k}").attempts == 1 for k in range(4))
    assert [h.outcome for h in queue.history()] == ["done"] * 4


@pytest.mark.timeout(120)
def test_a_killed_prefetching_worker_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    """Given a worker with --prefetch 5 killed with SIGKILL while it holds leases it has not
    started, and some finished but uncommitted, then another worker reclaims them once they
    expire and every item is committed exactly once, its output published."""
    settings = Settings(root=tmp_path / "root", tasks=SAMPLE_TASKS)
    settings.storage().root.mkdir(parents=True, exist_ok=True)
    queue = open_queue(settings.resolved_queue_url, settings.queue_options())
    names = [f"k{n:02d}" for n in range(30)]
    queue.push([item("stamp_slowly", n, seconds=0.1) for n in names])
    args = ["--lease-ttl", "1.5", "--poll", "0.05", "--prefetch", "5"]
    [victim] = spawn_workers(settings, 1, tmp_path / "logs", args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it mid-batch: some done, several held
        counts = queue.counts()
        if counts[State.DONE] >= 5 and counts[State.LEASED] >= 3:
            break
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    held = [i.id for i in queue.items([State.LEASED])]
    assert held, "the victim held no lease when it was killed"
    [heir] = spawn_workers(settings, 1, tmp_path / "logs", args)
    assert heir.wait(timeout=90) == exitcodes.OK
    done = collections.Counter(h.item_id for h in queue.history() if h.outcome == "done")
    assert done == {n: 1 for n in names}
    assert all(queue.get(n).state == State.DONE for n in names)
    assert {queue.get(n).attempts for n in held} == {2}  # reclaimed after the kill
    for n in names:
        assert (settings.root / f"runs/default/out/{n}.txt").exists()
    expired = [h.item_id for h in queue.history() if h.outcome == "expired"]
    assert sorted(expired) == sorted(held)

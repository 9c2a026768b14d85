"""A queue that lost its data is never read as a finished one.

Real worker processes against a real redis-server that comes back empty (killed, its append-only
file gone: what a restart without persistence does), and in-process workers against a purge.
Before queue generations, every worker here logged "vanished" or "Queue empty" and exited 0.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.errors import QueueNotFound
from batchml.local import spawn_workers
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State
from batchml.queue.sqlite import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.worker import Worker
from tests.redis_server import RedisServer

N_ITEMS = 120


def _items() -> list[ItemSpec]:
    task = "tests.sample_tasks:slow_write"
    return [
        ItemSpec(payload={"task": task, "name": f"n{k:03d}", "seconds": 0.1}, id=f"n{k:03d}")
        for k in range(N_ITEMS)
    ]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _restart_without_data(server: RedisServer) -> None:
    """Kill the server and bring it back on the same port with its append-only file gone."""
    server.kill()
    for name in ("appendonlydir", "appendonly.aof", "dump.rdb"):
        path = server.folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    time.sleep(0.3)
    server.start()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_redis_restarted_without_its_data_makes_every_worker_exit_65_then_a_repush_finishes(
    tmp_path: Path, redis_factory: Callable[[], RedisServer]
) -> None:
    """Given 2 worker processes mid-run, when Redis restarts empty, then each exits 65 (not 0:
    a Kubernetes Job must not read Complete) with one error naming the lost generation and how
    many items never ran; when the items are pushed again, a new run finishes with exit 0."""
    server = redis_factory()
    url = f"{server.url}?name=lossy"
    settings = Settings(root=tmp_path / "root", queue_url=url)
    settings.root.mkdir()
    queue = open_queue(url)
    queue.push(_items())
    generation = queue.generation()
    assert generation
    workers = spawn_workers(settings, 2, tmp_path / "logs", ["--lease-ttl", "2", "--poll", "0.05"])
    _wait_for(lambda: queue.counts()[State.DONE] >= 15, 90, "15 items done")
    _restart_without_data(server)
    codes = [p.wait(timeout=90) for p in workers]
    assert codes == [exitcodes.DATA_LOSS] * 2

    logs = [p.read_text() for p in sorted((tmp_path / "logs").glob("*.log"))]
    for log in logs:
        assert f"the queue lost its data: generation {generation} is gone" in log or (
            f"vanished while this worker held it; generation {generation} is gone" in log
        ), log[-3000:]
        missing = re.search(r"at least (\d+) item\(s\) were never processed", log)
        assert missing and 0 < int(missing.group(1)) <= N_ITEMS, log[-3000:]
        assert "re-push them" in log and "Queue empty, exiting" not in log
    assert queue.generation() is None and queue.counts()[State.DONE] == 0

    queue.push(_items())  # the rerun: a new generation, every item again
    assert queue.generation() not in (None, generation)
    rerun = spawn_workers(settings, 2, tmp_path / "logs2", ["--lease-ttl", "5", "--poll", "0.05"])
    assert [p.wait(timeout=90) for p in rerun] == [exitcodes.OK] * 2
    assert queue.counts()[State.DONE] == N_ITEMS
    assert len(list((settings.root / "runs/default/out").glob("*.txt"))) == N_ITEMS


def _run(worker: Worker, timeout: float = 60) -> int | BaseException:
    out: list[int | BaseException] = []

    def run() -> None:
        try:
            out.append(worker.run())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the worker did not finish"
    return out[0]


def _settings(root: Path) -> Settings:
    return Settings(root=root, worker=WorkerSettings(lease_ttl=5, poll_interval=0.02))


def test_a_purge_under_running_workers_is_data_loss_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="batchml.worker")
    """Given a worker idle on a waiting item (its dependency leased by another), when the queue
    is purged, then the worker exits 65: its queue's generation is gone."""
    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    noop = {"task": "tests.sample_tasks:noop"}
    queue.push([ItemSpec(payload=noop, id="a"), ItemSpec(payload=noop, id="b", depends_on=("a",))])
    held = queue.lease("elsewhere", 60)
    assert held and held.item.id == "a"
    generation = queue.generation()
    worker = Worker(queue, _settings(tmp_path).storage(), _settings(tmp_path), "w1")
    result: list[int | BaseException] = []
    thread = threading.Thread(target=lambda: result.append(_run(worker)))
    thread.start()
    _wait_for(lambda: "Waiting for work" in caplog.text, 30, "the worker to wait for work")
    queue.purge()
    thread.join(60)
    assert result == [exitcodes.DATA_LOSS]
    assert f"generation {generation} is gone" in caplog.text


@pytest.mark.redis
def test_a_worker_on_a_queue_that_was_never_created_says_so(tmp_path: Path, redis_url: str) -> None:
    """Given a Redis queue nothing was pushed to, then a worker refuses it as no such queue
    (exit 78 from the CLI) instead of reporting it drained."""
    queue = open_queue(redis_url)
    worker = Worker(queue, _settings(tmp_path).storage(), _settings(tmp_path), "w1")
    outcome = _run(worker)
    assert isinstance(outcome, QueueNotFound) and "no generation and no items" in str(outcome)

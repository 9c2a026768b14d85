"""A queue that lost its data is never read as a finished one.

Real worker processes against a real redis-server that comes back empty (killed, its append-only
file gone: what a restart without persistence does), and in-process workers against a purge.
Before queue generations, every worker here logged "vanished" or "Queue empty" and exited 0.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from batchml import exitcodes
from batchml.errors import QueueNotFound
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Storage
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.cli import run_cli
from tests.support.redis_server import RedisServer

N_ITEMS = 80


def _items() -> list[ItemSpec]:
    task = "tests.sample_tasks:slow_write"
    return [
        ItemSpec(payload={"task": task, "name": f"n{k:03d}", "seconds": 0.05}, id=f"n{k:03d}")
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
    settings = Settings(root=tmp_path / "root", queue_url=url, tasks=SAMPLE_TASKS)
    settings.root.mkdir()
    queue = open_queue(url)
    queue.push(_items())
    generation = queue.generation()
    assert generation
    workers = spawn_workers(settings, 2, tmp_path / "logs", ["--lease-ttl", "2", "--poll", "0.05"])
    _wait_for(lambda: queue.counts()[State.DONE] >= 10, 90, "10 items done")
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
    return Settings(
        root=root, tasks=SAMPLE_TASKS, worker=WorkerSettings(lease_ttl=5, poll_interval=0.02)
    )


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


def _start_from_snapshot(server: RedisServer) -> None:
    """Start the server again on its port without its append-only file: Redis's default
    persistence, which reloads the last RDB snapshot (dump.rdb) and loses what came after."""
    shutil.rmtree(server.folder / "appendonlydir")
    command = [
        server.binary, "--port", str(server.port), "--bind", "127.0.0.1",
        "--dir", str(server.folder), "--appendonly", "no", "--save", "",
        "--protected-mode", "no", "--logfile", str(server.folder / "redis.log"),
    ]  # fmt: skip
    server.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis.Redis(port=server.port, socket_connect_timeout=0.5)

    def up() -> bool:
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    _wait_for(up, 10, "redis-server to start from its snapshot")
    client.close()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_redis_back_from_an_older_snapshot_is_named_by_status_and_workers(
    tmp_path: Path, redis_factory: Callable[[], RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given items committed after Redis's last snapshot, when it restarts from that snapshot
    (its generation survives, those items do not), then `queue status` and a new worker both
    name the loss and exit 65, instead of reporting a drained, finished queue."""
    server = redis_factory()
    url = f"{server.url}?name=snap"
    settings = Settings(root=tmp_path / "root", queue_url=url, tasks=SAMPLE_TASKS)
    settings.root.mkdir()
    queue = open_queue(url)
    task = "tests.sample_tasks:write_output"
    queue.push([ItemSpec(payload={"task": task, "name": f"a{k}"}, id=f"a{k}") for k in range(3)])
    assert spawn_workers(settings, 1, tmp_path / "l1")[0].wait(timeout=60) == exitcodes.OK
    admin = redis.Redis.from_url(server.url)
    admin.save()  # the snapshot: a0..a2 done
    queue.push([ItemSpec(payload={"task": task, "name": f"b{k}"}, id=f"b{k}") for k in range(2)])
    assert spawn_workers(settings, 1, tmp_path / "l2")[0].wait(timeout=60) == exitcodes.OK
    server.kill()
    _start_from_snapshot(server)
    generation = queue.generation()
    assert generation and queue.counts()[State.DONE] == 3  # b0, b1 are gone

    cli = ("--root", str(settings.root), "--queue", url)
    status = run_cli(capsys, *cli, "queue", "status")
    assert status.code == exitcodes.DATA_LOSS
    assert f"2 item(s) committed in generation {generation} are no longer in it" in status.err
    [worker] = spawn_workers(settings, 1, tmp_path / "l3")
    assert worker.wait(timeout=60) == exitcodes.DATA_LOSS
    assert "e.g. b0" in (tmp_path / "l3/worker-0.log").read_text()


def test_status_looks_up_only_the_committed_items_not_the_whole_queue(tmp_path: Path) -> None:
    """`queue status` on a big queue with a few records must not read every item (on a 1 M
    item Redis that took 37 s of server time and blocked every worker): it looks up the
    committed ones, and still names one the queue lost."""
    from batchml.worker.dataloss import status_data_loss

    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions())
    queue.push([ItemSpec(payload={"task": "noop"}, id=f"i{k:05d}") for k in range(3_000)])
    generation = queue.generation()
    assert generation
    records = tmp_path / "runs" / "r" / "records"
    records.mkdir(parents=True)
    for item_id in ("i00001", "i00002", "lost-one"):
        record = {"item_id": item_id, "generation": generation, "finished_at": 1.0}
        (records / f"{item_id}.json").write_text(json.dumps(record))
    (records / "old.json").write_text(json.dumps({"item_id": "x", "generation": "older"}))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("queue status read every item of the queue")

    queue.items = refuse  # type: ignore[method-assign]
    message = status_data_loss(queue, Storage(tmp_path))
    assert message is not None and "1 item(s) committed in generation" in message
    assert "e.g. lost-one" in message

"""A worker that cannot reach Redis when it starts waits for it, as it does mid-run.

In a cluster a worker pod often starts while Redis is restarting or before its Service answers.
Opening the queue used to be the one call not retried: the worker exited 69 at once, and the Job
counted a failed pod. Now the first connection rides out an outage of up to ``--queue-retry``
seconds like every later call, and still exits 69 when the outage lasts longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, State
from batchml.settings import Settings
from batchml.worker.local import spawn_workers
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.redis_server import RedisServer, free_port


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _log(folder: Path) -> str:
    return (folder / "worker-0.log").read_text(errors="replace")


@pytest.mark.timeout(90)
def test_a_worker_started_while_redis_is_down_waits_for_it_then_drains_the_queue(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory(appendfsync="always")  # the pushed items survive the kill
    url = f"{server.url}?name=opening"
    root = tmp_path / "root"
    root.mkdir()
    settings = Settings(root=root, queue_url=url, tasks=SAMPLE_TASKS)
    queue = open_queue(url, settings.queue_options())
    task = "tests.sample_tasks:write_output"
    queue.push([ItemSpec(payload={"task": task, "name": f"n{i}"}, id=f"n{i}") for i in range(3)])
    queue.close()
    server.kill()

    logs = tmp_path / "logs"
    [worker] = spawn_workers(settings, 1, logs, ["--queue-retry", "60", "--poll", "0.05"])
    try:
        _wait_for(lambda: "open the queue" in _log(logs), 30, "the worker to retry opening")
        assert worker.poll() is None, _log(logs)  # still waiting, not exited 69
        server.start()
        assert worker.wait(timeout=60) == exitcodes.OK, _log(logs)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    queue = open_queue(url, settings.queue_options())
    assert {i.id: i.state for i in queue.items()} == {f"n{i}": State.DONE for i in range(3)}
    assert sorted(p.name for p in (root / "runs/default/out").iterdir()) == [
        "n0.txt", "n1.txt", "n2.txt",
    ]  # fmt: skip
    queue.close()


@pytest.mark.timeout(60)
def test_a_worker_whose_redis_never_answers_exits_69_once_queue_retry_is_spent(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    url = f"redis://127.0.0.1:{free_port()}/0?name=nobody"  # nothing listens there
    settings = Settings(root=root, queue_url=url, tasks=SAMPLE_TASKS)
    logs = tmp_path / "logs"
    [worker] = spawn_workers(settings, 1, logs, ["--queue-retry", "1.5"])
    assert worker.wait(timeout=45) == exitcodes.UNAVAILABLE, _log(logs)
    text = _log(logs)
    assert "open the queue" in text and "retrying in" in text
    assert "cannot reach Redis" in text

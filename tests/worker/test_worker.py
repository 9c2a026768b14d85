"""The worker loop in-process: commit and publish, retries, dead items, lost leases."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State, WorkerInfo
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Storage
from batchml.worker.loop import Worker
from tests.sample_tasks import SAMPLE_TASKS


@pytest.fixture
def env(tmp_path: Path) -> tuple[SqliteQueue, Storage, Settings]:
    settings = Settings(
        root=tmp_path / "root",
        worker=WorkerSettings(lease_ttl=5.0, poll_interval=0.05, grace=0.0),
        tasks=SAMPLE_TASKS,
    )
    retry = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_factor=1.0)
    queue = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=retry))
    return queue, settings.storage(), settings


def item(task: str, name: str, **payload: object) -> ItemSpec:
    return ItemSpec(
        payload={"task": f"tests.sample_tasks:{task}", "name": name, **payload}, id=name
    )


def test_user_task_outputs_and_records_are_published_after_commit(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    queue.push([item("write_output", "a"), item("write_output", "b")])
    code = Worker(queue, storage, settings, "w1").run()
    assert code == exitcodes.OK
    assert (storage.root / "runs/default/out/a.txt").read_text() == "a by w1\n"
    record = json.loads((storage.root / "runs/default/records/b.json").read_text())
    assert record["result"] == {"name": "b"} and record["worker"] == "w1" and record["token"] == 1
    assert queue.get("a").state == State.DONE
    assert [p.final for p in queue.get("a").outputs] == [
        "runs/default/out/a.txt",
        "runs/default/records/a.json",
    ]
    assert not any((storage.root / ".staging").rglob("*.txt"))


def test_each_staged_file_is_hashed_once_per_attempt(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A train step's checkpoint is MBs: the worker hashed every output twice (once for the
    record, again for the commit). Each staged file is read for its sha256 once now."""
    queue, storage, settings = env
    hashed: list[str] = []
    real = Storage.sha256

    def counting(self: Storage, rel: str, *args: object, **kwargs: object) -> str:
        hashed.append(str(rel).split("/", 3)[-1])
        return real(self, rel, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Storage, "sha256", counting)
    queue.push([item("write_output", "a")])
    assert Worker(queue, storage, settings, "w1").run() == exitcodes.OK
    assert sorted(hashed) == sorted(set(hashed)) and len(hashed) == 2, hashed
    assert queue.get("a").outputs[0].sha256 == real(storage, "runs/default/out/a.txt")


def test_poison_item_is_retried_then_dead_and_the_others_complete(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    queue.push(
        [item("write_output", "ok1"), item("always_fail", "poison"), item("write_output", "ok2")]
    )
    code = Worker(queue, storage, settings, "w1").run()
    assert code == exitcodes.DEAD_ITEMS
    poison = queue.get("poison")
    assert poison.state == State.DEAD and poison.attempts == 3
    assert "ValueError: poison item poison" in (poison.last_error or "")
    assert "sample_tasks.py" in (poison.last_error or "")  # where an unexpected error arose
    assert queue.get("ok1").state == queue.get("ok2").state == State.DONE
    assert not (storage.root / "runs/default/out/never.txt").exists()
    assert [h.outcome for h in queue.history() if h.item_id == "poison"] == [
        "failed",
        "failed",
        "dead",
    ]


def test_unknown_task_goes_dead_at_once_with_a_clear_error(env) -> None:  # type: ignore[no-untyped-def]
    """Given an item naming a module:function that is not registered (3 attempts allowed),
    then it is dead after one attempt, with an error naming the task and how to allow it."""
    queue, storage, settings = env
    queue.push([ItemSpec(payload={"task": "no.such.module:fn"}, id="x")])
    assert Worker(queue, storage, settings).run() == exitcodes.DEAD_ITEMS
    dead = queue.get("x")
    assert dead.state == State.DEAD and dead.attempts == 1
    assert "task 'no.such.module:fn' is not registered" in (dead.last_error or "")
    assert "--tasks no.such.module" in (dead.last_error or "")
    assert [h.outcome for h in queue.history()] == ["dead"]


def test_item_path_outside_the_root_fails_and_publishes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    payload = {"task": "tests.sample_tasks:write_output", "name": "../../x"}
    queue.push([ItemSpec(payload=payload, id="esc", max_attempts=1)])
    assert Worker(queue, storage, settings).run() == exitcodes.DEAD_ITEMS
    assert "PathEscapeError" in (queue.get("esc").last_error or "")
    assert not (storage.root.parent / "x.txt").exists()


def test_path_escape_is_permanent_dead_on_the_first_attempt(env, caplog) -> None:  # type: ignore[no-untyped-def]
    """Given a path-escaping item with 3 attempts allowed, then it is not retried: dead after
    attempt 1 (its history shows one attempt), and the worker says why."""
    queue, storage, settings = env
    payload = {"task": "tests.sample_tasks:write_output", "name": "../../x"}
    queue.push([ItemSpec(payload=payload, id="esc"), item("write_output", "ok")])
    worker_log = logging.getLogger("batchml.worker")
    worker_log.addHandler(caplog.handler)  # direct: the CLI's logging set-up stops propagation
    try:
        assert Worker(queue, storage, settings).run() == exitcodes.DEAD_ITEMS
    finally:
        worker_log.removeHandler(caplog.handler)
    esc = queue.get("esc")
    assert esc.state == State.DEAD and esc.attempts == 1
    assert "PathEscapeError" in (esc.last_error or "")
    assert [h.outcome for h in queue.history() if h.item_id == "esc"] == ["dead"]
    assert "item esc is dead at once: permanent error: PathEscapeError" in caplog.text
    assert queue.get("ok").state == State.DONE


def test_payload_refused_by_the_validator_is_dead_at_once_and_the_task_never_runs(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    queue.push([ItemSpec(payload={"task": "tests.sample_tasks:validated_write"}, id="bad")])
    queue.push([item("validated_write", "good")])
    assert Worker(queue, storage, settings).run() == exitcodes.DEAD_ITEMS
    bad = queue.get("bad")
    assert bad.state == State.DEAD and bad.attempts == 1
    assert "PayloadError: sample payload needs a 'name' string" in (bad.last_error or "")
    assert (storage.root / "runs/default/out/good.txt").exists()


def test_only_decorated_functions_defined_in_a_tasks_module_run(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Given --tasks tests.sample_tasks, then a function of it without @task, and a @task
    imported into it from elsewhere, are refused: dead at once, never called."""
    queue, storage, settings = env
    marker = tmp_path / "undecorated-ran"
    queue.push(
        [
            ItemSpec(
                payload={"task": "tests.sample_tasks:undecorated", "marker": str(marker)}, id="u"
            ),
            ItemSpec(payload={"task": "tests.sample_tasks:imported_sleep"}, id="i"),
        ]
    )
    assert Worker(queue, storage, settings).run() == exitcodes.DEAD_ITEMS
    assert not marker.exists()
    for item_id in ("u", "i"):
        dead = queue.get(item_id)
        assert dead.attempts == 1 and "is not registered" in (dead.last_error or "")


def test_lost_lease_abandons_without_publishing(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Given a worker whose heartbeats stop reaching the queue, when its lease is taken over,
    then its task stops at the next check and nothing of it is published."""
    queue, storage, settings = env
    settings = settings.with_worker(lease_ttl=0.6, heartbeat_every=10.0)  # no renewal in time
    queue.push([item("slow_write", "slow", seconds=3.0)])
    w = Worker(queue, storage, settings, "frozen")
    thread = threading.Thread(target=w.run)
    thread.start()
    deadline = time.monotonic() + 10
    while queue.get("slow").state != State.LEASED and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.8)  # past the TTL: the lease is up for grabs
    other = queue.lease("thief", ttl=30)
    assert other is not None and other.item.id == "slow"
    w.stop()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert w.outcomes and w.outcomes[0].status == "expired"
    assert not (storage.root / "runs/default/out/slow.txt").exists()
    assert not list((storage.root / ".staging").rglob("*.txt"))
    assert queue.get("slow").worker == "thief"


def test_heartbeat_keeps_a_long_item_leased(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    settings = settings.with_worker(lease_ttl=0.5, heartbeat_every=0.1)
    queue.push([item("slow_write", "long", seconds=1.5)])
    w = Worker(queue, storage, settings, "w")
    assert w.run() == exitcodes.OK
    assert queue.get("long").attempts == 1 and queue.get("long").token == 1


def test_worker_rolls_forward_outputs_left_unpublished(env, caplog) -> None:  # type: ignore[no-untyped-def]
    """Given an item committed by a worker that died before renaming its outputs,
    when another worker finds the queue drained, then it publishes them."""
    queue, storage, settings = env
    queue.push([item("write_output", "z")])
    lease = queue.lease("dying", ttl=30)
    assert lease
    staged = storage.staging_path("z", lease.token, "runs/default/out/z.txt")
    path = storage.resolve(staged)
    path.parent.mkdir(parents=True)
    path.write_text("from the dead\n")
    from batchml.storage import Publication, sha256_file

    pub = Publication(staged=staged, final="runs/default/out/z.txt", sha256=sha256_file(path))
    queue.complete("z", lease.token, {}, outputs=[pub])
    assert not (storage.root / pub.final).exists()
    # and a committed output deleted from the volume is reported, without stopping the rest
    queue.push([item("write_output", "gone")])
    other = queue.lease("dying", ttl=30)
    assert other
    lost = Publication(staged=".staging/gone.t1/x", final="runs/default/out/gone.txt", sha256="0")
    queue.complete("gone", other.token, {}, outputs=[lost])
    publish_log = logging.getLogger("batchml.publish")
    publish_log.addHandler(caplog.handler)  # direct: the CLI's logging set-up stops propagation
    try:
        assert Worker(queue, storage, settings).run() == exitcodes.OK
    finally:
        publish_log.removeHandler(caplog.handler)
    assert (storage.root / pub.final).read_text() == "from the dead\n"
    assert "item gone: cannot publish runs/default/out/gone.txt" in caplog.text


@pytest.mark.timeout(60)
def test_task_still_running_when_the_grace_period_ends_is_released(tmp_path: Path) -> None:
    """Given a worker with --grace 1 on a 60-second item, when it gets SIGTERM, then after
    about a second the item is released (not counted as an attempt) and the worker exits 143."""
    import signal
    import subprocess

    from batchml.worker.local import spawn_workers

    settings = Settings(root=tmp_path / "root", tasks=SAMPLE_TASKS)
    queue = SqliteQueue(tmp_path / "root" / "queue.db")
    marker = tmp_path / "started"
    queue.push([item("slow_write", "long", seconds=60, started_marker=str(marker))])
    [proc] = spawn_workers(settings, 1, tmp_path / "logs", ["--grace", "1", "--lease-ttl", "30"])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), (tmp_path / "logs/worker-0.log").read_text()
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        assert proc.wait(timeout=15) == exitcodes.TERMINATED
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert 0.9 < time.monotonic() - signalled < 10
    released = queue.get("long")
    assert released.state == State.READY and released.attempts == 0
    assert [h.outcome for h in queue.history()] == ["released"]
    log = (tmp_path / "logs/worker-0.log").read_text()
    assert "finishing the current item within 1s" in log and "grace period over" in log
    assert not (tmp_path / "root/runs/default/out/long.txt").exists()


# -- the commit that leases the next item, and the status reports ------------------------------


def _record_calls(queue: SqliteQueue, calls: list[Any], *names: str) -> None:
    """Wrap the queue's methods ``names`` so that each call appends (name, args) to ``calls``."""
    for name in names:
        real = getattr(queue, name)

        def recorded(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append((_name, args))
            return _real(*args, **kwargs)

        setattr(queue, name, recorded)


def test_commits_lease_the_next_item_in_the_same_call(env) -> None:  # type: ignore[no-untyped-def]
    """Given three items, then the worker leases once and every commit but the last leases
    the next item: one queue call per item, and each item ran once."""
    queue, storage, settings = env
    queue.push([item("write_output", n) for n in ("a", "b", "c")])
    calls: list[Any] = []
    _record_calls(queue, calls, "lease", "complete", "complete_and_lease")
    assert Worker(queue, storage, settings, "w1").run() == exitcodes.OK
    assert [name for name, _ in calls] == ["lease", *["complete_and_lease"] * 3, "lease"]
    assert all(queue.get(n).attempts == 1 and queue.get(n).state == State.DONE for n in "abc")
    assert (storage.root / "runs/default/out/c.txt").exists()


def test_max_items_commits_the_last_one_without_leasing_another(env) -> None:  # type: ignore[no-untyped-def]
    queue, storage, settings = env
    queue.push([item("write_output", "a"), item("write_output", "b")])
    w = Worker(queue, storage, settings.with_worker(max_items=1), "w1")
    assert w.run() == exitcodes.OK
    assert queue.get("a").state == State.DONE
    b = queue.get("b")
    assert b.state == State.READY and b.attempts == 0 and b.token == 0


def test_stop_during_a_commit_that_leased_gives_the_next_item_back(env) -> None:  # type: ignore[no-untyped-def]
    """Given SIGTERM arriving while the commit of a (which also leased b) is on its way, then a
    is done and published, b is given back untouched (not counted), and the worker stops."""
    queue, storage, settings = env
    queue.push([item("write_output", "a"), item("write_output", "b")])
    w = Worker(queue, storage, settings, "w1")
    real = queue.complete_and_lease

    def commit_then_sigterm(*args: object, **kwargs: object) -> object:
        lease = real(*args, **kwargs)  # type: ignore[arg-type]
        w.stop()
        return lease

    queue.complete_and_lease = commit_then_sigterm  # type: ignore[method-assign]
    assert w.run() == exitcodes.TERMINATED
    assert queue.get("a").state == State.DONE
    assert (storage.root / "runs/default/out/a.txt").exists()
    b = queue.get("b")
    assert b.state == State.READY and b.attempts == 0 and b.token == 1
    assert [h.outcome for h in queue.history()] == ["done", "released"]


def test_reports_are_throttled_but_name_the_item_of_a_long_task(env) -> None:  # type: ignore[no-untyped-def]
    """Given many short items then a long one, then the worker does not report each short item
    (a round trip each), yet while the long one runs `queue status` names it."""
    queue, storage, settings = env
    settings = settings.with_worker(lease_ttl=3.0, heartbeat_every=0.3)
    queue.push([item("write_output", f"s{i}") for i in range(30)])
    queue.push([item("slow_write", "long", seconds=2.0)])
    calls: list[Any] = []
    _record_calls(queue, calls, "report_worker")
    w = Worker(queue, storage, settings, "w1")
    thread = threading.Thread(target=w.run)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [w.item_id for w in queue.workers()] != ["long"]:
        time.sleep(0.02)
    [shown] = queue.workers()
    running = queue.get("long").state == State.LEASED
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert shown.item_id == "long" and shown.state == "working" and running
    reports: list[WorkerInfo] = [args[0] for _, args in calls]
    working = [r for r in reports if r.state == "working"]
    assert 1 <= len(working) < 15, [r.item_id for r in working]
    assert reports[-1].state == "exited" and reports[-1].processed == 31

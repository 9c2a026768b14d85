"""Faults against the Redis queue: real worker processes, a real redis-server, real signals.

Given the same datasets, an undisturbed one-worker run gives the reference lineage. Then:
workers SIGKILLed at random and replaced; a worker frozen (SIGSTOP) past its lease; Redis itself
killed and restarted; a poison item; SIGTERM. In each, nothing is lost, nothing is done twice,
and the model is bit-identical to the reference. A second part injects queue outages into an
in-process worker, where the timing is exact.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.errors import QueueUnavailable
from batchml.fraud import plan
from batchml.fraud.data.simulate import SimulationConfig
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, LineageHead, QueueOptions, RetryPolicy, State, WorkQueue
from batchml.queue.redis.queue import RedisQueue
from batchml.settings import Settings, WorkerSettings
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker
from tests.conftest import with_queue_name
from tests.queue.test_queue_redis import LostReply
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.cli import run_cli
from tests.support.fraud_data import small_root
from tests.support.kill_schedule import KillSchedule
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]

#: 30 days: enough items for the chaos test's kills (first after 4 commits, then every 4-7)
SIM = SimulationConfig(n_customers=150, n_terminals=300, n_days=30, seed=11)
FAST = ["--lease-ttl", "2", "--poll", "0.05"]
Procs = list[subprocess.Popen[bytes]]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition()``; the seconds it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def _fill(root: Path, cache: Path, url: str, max_attempts: int = 3) -> tuple[Settings, WorkQueue]:
    """A storage root with the simulated days, and their training items pushed to ``url``."""
    days = small_root(cache, root, SIM)
    settings = Settings(root=root, queue_url=url, max_attempts=max_attempts)
    queue = open_queue(url, settings.queue_options())
    queue.push(plan.training_items(queue, days, run=settings.run))
    return settings, queue


def _run_in_thread(worker: Worker, timeout: float) -> int:
    """Run a worker on a thread (so it leaves the test's signal handlers and pytest-timeout's
    alarm alone); its exit code, or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(worker.run())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the worker did not finish in time"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return int(outcome[0])


def _assert_exactly_once(root: Path, queue: WorkQueue, days: list[str]) -> None:
    """Every item done once, one lineage version per day in order, one file per effect."""
    counts = queue.counts()
    total = len(queue.items())
    assert counts[State.DONE] == total and counts[State.DEAD] == 0, counts
    done = [h.item_id for h in queue.history(10_000) if h.outcome == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == total
    chain = queue.lineage("default")
    assert [h.dataset for h in chain] == days
    assert [h.version for h in chain] == list(range(1, len(days) + 1))
    ckpts = [p.name for p in (root / "runs/default/checkpoints").iterdir()]
    assert len(ckpts) == 2 * len(days) and not [n for n in ckpts if n.startswith(".")]
    assert len(list((root / "runs/default/records").glob("*.json"))) == total


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, sim_cache: Path, redis_server: str
) -> tuple[list[str], list[LineageHead]]:
    """The days and the lineage of an undisturbed run with one worker."""
    root = tmp_path_factory.mktemp("reference") / "root"
    url = with_queue_name(redis_server, f"ref-{uuid.uuid4().hex[:8]}")
    settings, queue = _fill(root, sim_cache, url)
    worker = Worker(queue, settings.storage(), settings.with_worker(poll_interval=0.05), "ref")
    assert _run_in_thread(worker, 100) == exitcodes.OK
    chain = queue.lineage(settings.run)
    return [h.dataset or "" for h in chain], chain


def _pid(worker_id: str) -> int:
    """The pid in a worker id (host-pid-random)."""
    return int(worker_id.rsplit("-", 2)[-2])


def _lease_holders(queue: WorkQueue) -> set[int]:
    """Pids of the worker processes holding a lease."""
    return {_pid(i.worker) for i in queue.items([State.LEASED]) if i.worker}


def _committers(queue: WorkQueue) -> set[int]:
    """Pids of the worker processes that have committed an item."""
    return {_pid(h.worker) for h in queue.history(10_000) if h.outcome == "done"}


# -- real processes ----------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_chaos_random_sigkills_lose_nothing_and_match_the_undisturbed_run(
    tmp_path: Path, sim_cache: Path, redis_url: str, reference: tuple[list[str], list[LineageHead]]
) -> None:
    """Given 4 workers, when every 1-2 s (or every 4-7 committed items, whichever comes first,
    so a fast idle machine sees kills too) one of them is SIGKILLed in the middle of an item and
    replaced, until the queue is drained, then nothing is lost or done twice and the model is
    bit-identical to the undisturbed run's. (A new worker takes seconds to start and, on a busy
    machine, several more on its first item - imports, first feature computation - so only
    workers that have committed an item are killed, and only once two have started: otherwise
    every worker can die in its first item, and the same item expires until it is dead.)"""
    days, ref_chain = reference
    root = tmp_path / "root"
    settings, queue = _fill(root, sim_cache, redis_url, max_attempts=10)
    rng = random.Random(5)
    procs = spawn_workers(settings, 4, tmp_path / "logs", FAST)
    schedule = KillSchedule(rng, seconds=(1.0, 2.0), items=(4, 7), first_after=4)
    kills = 0
    deadline = time.monotonic() + 120
    while not queue.drained() and time.monotonic() < deadline:
        time.sleep(0.05)
        done = queue.counts()[State.DONE]
        if not schedule.due(done):
            continue
        alive = {p.pid: p for p in procs if p.poll() is None}
        started = {w.pid for w in queue.workers()} & set(alive)
        victims = sorted(_lease_holders(queue) & started & _committers(queue))
        if len(started) >= 2 and victims and not queue.drained():
            victim = alive[rng.choice(victims)]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            kills += 1
            schedule.killed(done)
            procs = [p for p in procs if p.poll() is None]
            procs += spawn_workers(settings, 4 - len(procs), tmp_path / "logs", FAST)
    codes = [p.wait(timeout=60) for p in procs]
    assert queue.drained(), "the chaos run did not drain in time"
    assert set(codes) == {exitcodes.OK}, codes

    assert kills >= 3, f"{kills} kills"
    expired = [h for h in queue.history(10_000) if h.outcome == "expired"]
    assert expired, "no kill landed while its worker held a lease"
    _assert_exactly_once(root, queue, days)
    chain = queue.lineage("default")
    assert chain[-1].params_digest == ref_chain[-1].params_digest
    assert [h.params_digest for h in chain] == [h.params_digest for h in ref_chain]


@pytest.mark.timeout(90)
def test_frozen_worker_past_its_lease_is_fenced_off_and_publishes_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()  # a worker refuses a storage root that does not exist
    settings = Settings(root=root, queue_url=redis_url, tasks=SAMPLE_TASKS)
    queue = open_queue(redis_url)
    marker = tmp_path / "started"
    payload = {
        "task": "tests.sample_tasks:stamp_slowly", "name": "f", "seconds": 4,
        "started_marker": str(marker),
    }  # fmt: skip
    queue.push([ItemSpec(payload=payload, id="frozen")])
    # A: a 1 s lease it never renews in time, so only the queue's fencing can stop its commit
    [a] = spawn_workers(settings, 1, tmp_path / "a", ["--lease-ttl", "1", "--heartbeat", "100"])
    _wait_for(lambda: Path(f"{marker}.1").exists(), 60, "worker A to start the item")
    a.send_signal(signal.SIGSTOP)
    try:
        a_id = queue.get("frozen").worker
        [b] = spawn_workers(settings, 1, tmp_path / "b", ["--lease-ttl", "10", "--poll", "0.05"])
        _wait_for(lambda: Path(f"{marker}.2").exists(), 60, "worker B to take the item over")
    finally:
        a.send_signal(signal.SIGCONT)
    b_id = Path(f"{marker}.2").read_text().split()[1]
    assert b_id != a_id
    assert a.wait(timeout=60) == exitcodes.OK and b.wait(timeout=60) == exitcodes.OK

    item = queue.get("frozen")
    assert item.state == State.DONE and item.token == 2 and item.result == {
        "name": "f", "worker": b_id,
    }  # fmt: skip
    assert (root / "runs/default/out/f.txt").read_text() == f"{b_id}\n"
    record = json.loads((root / "runs/default/records/frozen.json").read_text())
    assert record["worker"] == b_id and record["token"] == 2
    outcomes = [(h.token, h.outcome) for h in queue.history() if h.item_id == "frozen"]
    assert outcomes == [(1, "expired"), (2, "done")]
    log = (tmp_path / "a/worker-0.log").read_text()
    assert "abandoned frozen" in log and "token 1 is no longer current" in log
    assert not (root / ".staging/frozen/t1").exists()  # the fenced attempt's folder


@pytest.mark.timeout(120)
def test_redis_killed_and_restarted_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path,
    sim_cache: Path,
    redis_factory: Callable[[], RedisServer],
    reference: tuple[list[str], list[LineageHead]],
) -> None:
    days, ref_chain = reference
    server = redis_factory()
    root = tmp_path / "root"
    settings, queue = _fill(root, sim_cache, f"{server.url}?name=restart")
    total = len(queue.items())
    procs = spawn_workers(settings, 2, tmp_path / "logs", ["--lease-ttl", "5", "--poll", "0.05"])
    _wait_for(lambda: queue.counts()[State.DONE] >= total // 4, 90, "a quarter of the items")
    server.kill()
    time.sleep(1.5)
    server.start()
    codes = [p.wait(timeout=90) for p in procs]
    assert codes == [exitcodes.OK, exitcodes.OK]
    _assert_exactly_once(root, queue, days)
    assert queue.lineage("default")[-1].params_digest == ref_chain[-1].params_digest
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "cannot reach Redis" in logs and "retrying in" in logs  # the outage was ridden out


@pytest.mark.timeout(90)
def test_poison_item_is_retried_with_backoff_then_dead_and_named_by_status(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()  # a worker refuses a storage root that does not exist
    settings = Settings(root=root, queue_url=redis_url, max_attempts=3, tasks=SAMPLE_TASKS)
    queue = open_queue(redis_url, settings.queue_options())
    task = "tests.sample_tasks:"
    queue.push(
        [ItemSpec(payload={"task": f"{task}write_output", "name": f"ok{i}"}, id=f"ok{i}")
         for i in range(5)]
        + [ItemSpec(payload={"task": f"{task}always_fail", "name": "poison"}, id="poison")]
    )  # fmt: skip
    procs = spawn_workers(settings, 2, tmp_path / "logs", FAST)
    assert [p.wait(timeout=60) for p in procs] == [exitcodes.DEAD_ITEMS] * 2

    poison = queue.get("poison")
    assert poison.state == State.DEAD and poison.attempts == 3
    assert "ValueError: poison item poison" in (poison.last_error or "")
    assert all(queue.get(f"ok{i}").state == State.DONE for i in range(5))
    assert not (root / "runs/default/out/never.txt").exists()
    attempts = [h for h in queue.history() if h.item_id == "poison"]
    assert [h.outcome for h in attempts] == ["failed", "failed", "dead"]
    gaps = [b.started_at - a.ended_at for a, b in itertools.pairwise(attempts)]
    retry = settings.queue_options().retry
    assert gaps[0] >= retry.backoff(1) - 0.01 and gaps[1] >= retry.backoff(2) - 0.01, gaps

    args = ("--root", str(root), "--queue", redis_url, "queue", "status")
    text = run_cli(capsys, *args)
    assert text.code == 0 and "poison" in text.out and "ValueError: poison item poison" in text.out
    data = json.loads(run_cli(capsys, *args, "--json").out)
    assert [d["id"] for d in data["dead"]] == ["poison"] and "poison item" in data["dead"][0][
        "error"
    ]


@pytest.mark.timeout(90)
def test_sigterm_releases_at_once_or_finishes_within_grace(tmp_path: Path, redis_url: str) -> None:
    """Given one worker with --grace 0 on a long item and one with --grace 10 on a short one,
    when both get SIGTERM, then the first item is leasable again within a second (not counted
    as an attempt), the second is committed, no new item is leased, both exit 143 in time."""
    slow = "tests.sample_tasks:slow_write"
    url_b = with_queue_name(redis_url, f"{urlsplit_name(redis_url)}-b")
    qa, qb = open_queue(redis_url), open_queue(url_b)
    marker_a, marker_b = tmp_path / "a-started", tmp_path / "b-started"
    qa.push([ItemSpec(payload={"task": slow, "name": "long", "seconds": 60,
                               "started_marker": str(marker_a)}, id="long")])  # fmt: skip
    qb.push([ItemSpec(payload={"task": slow, "name": "short", "seconds": 2,
                               "started_marker": str(marker_b)}, id="short"),
             ItemSpec(payload={"task": slow, "name": "next"}, id="next")])  # fmt: skip
    (tmp_path / "ra").mkdir()  # a worker refuses a storage root that does not exist
    (tmp_path / "rb").mkdir()
    [a] = spawn_workers(
        Settings(root=tmp_path / "ra", queue_url=redis_url, tasks=SAMPLE_TASKS), 1, tmp_path / "la",
        ["--grace", "0", "--lease-ttl", "30"],
    )  # fmt: skip
    [b] = spawn_workers(
        Settings(root=tmp_path / "rb", queue_url=url_b, tasks=SAMPLE_TASKS), 1, tmp_path / "lb",
        ["--grace", "10", "--lease-ttl", "30"],
    )  # fmt: skip
    _wait_for(lambda: marker_a.exists() and marker_b.exists(), 60, "both items to start")
    a.send_signal(signal.SIGTERM)
    b.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    took = _wait_for(lambda: qa.get("long").state == State.READY, 5, "the long item released")
    assert took < 1.0
    thief = qa.lease("thief", 30)
    assert thief and thief.item.id == "long" and thief.item.attempts == 1 and thief.token == 2
    assert a.wait(timeout=5) == exitcodes.TERMINATED
    assert time.monotonic() - signalled < 5
    assert [h.outcome for h in qa.history()] == ["released"]

    assert b.wait(timeout=15) == exitcodes.TERMINATED
    assert time.monotonic() - signalled < 10 + 2
    assert qb.get("short").state == State.DONE and qb.get("next").state == State.READY
    assert (tmp_path / "rb/runs/default/out/short.txt").exists()


def urlsplit_name(url: str) -> str:
    return url.rsplit("name=", 1)[1]


# -- in-process worker against injected outages ------------------------------------------------


class Flaky:
    """A queue whose chosen methods fail with QueueUnavailable: ``before`` the call (it never
    reached the server) or ``after`` it (it ran, but its reply was lost)."""

    def __init__(self, inner: WorkQueue) -> None:
        self.inner = inner
        self.faults: dict[str, list[str]] = {}

    def inject(self, method: str, *when: str) -> None:
        self.faults.setdefault(method, []).extend(when)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            plan = self.faults.get(name)
            when = plan.pop(0) if plan else None
            if when == "before":
                raise QueueUnavailable(f"injected: {name} never reached Redis")
            result = attr(*args, **kwargs)
            if when == "after":
                raise QueueUnavailable(f"injected: the reply to {name} was lost")
            return result

        return call


@pytest.fixture
def flaky(redis_url: str, tmp_path: Path) -> Iterator[tuple[Flaky, Settings]]:
    retry = RetryPolicy(max_attempts=3, backoff_base=0.01)
    queue = Flaky(open_queue(redis_url, QueueOptions(retry=retry)))
    worker = WorkerSettings(lease_ttl=5, poll_interval=0.02, queue_retry=5)
    yield (
        queue,
        Settings(root=tmp_path / "root", queue_url=redis_url, worker=worker, tasks=SAMPLE_TASKS),
    )
    queue.inner.close()


def _items(*names: str) -> list[ItemSpec]:
    task = "tests.sample_tasks:write_output"
    return [ItemSpec(payload={"task": task, "name": n}, id=n) for n in names]


@pytest.mark.parametrize(("method", "max_items"), [("complete", 1), ("complete_and_lease", None)])
def test_commit_whose_reply_was_lost_is_recognised_and_published(
    flaky: tuple[Flaky, Settings], method: str, max_items: int | None
) -> None:
    """The last commit of a worker (max_items) is a plain complete; others also lease."""
    queue, settings = flaky
    settings = settings.with_worker(max_items=max_items)
    queue.push(_items("a"))
    queue.inject(method, "after")
    worker = Worker(queue, settings.storage(), settings, "w1")  # type: ignore[arg-type]
    assert _run_in_thread(worker, 30) == exitcodes.OK
    assert queue.faults[method] == [], "the reply was never lost"
    assert [o.status for o in worker.outcomes] == ["done"]
    assert (settings.root / "runs/default/out/a.txt").read_text() == "a by w1\n"
    assert queue.get("a").attempts == 1 and not list((settings.root / ".staging").rglob("*"))


def test_worker_rides_out_an_outage_in_every_call(flaky: tuple[Flaky, Settings]) -> None:
    queue, settings = flaky
    queue.push([*_items("a", "b"), ItemSpec(payload={"task": "x:y"}, id="bad", max_attempts=1)])
    for method in ("lease", "complete_and_lease", "fail", "drained", "heartbeat", "report_worker"):
        queue.inject(method, "before", "before", "before")
    worker = Worker(queue, settings.storage(), settings, "w1")  # type: ignore[arg-type]
    assert _run_in_thread(worker, 30) == exitcodes.DEAD_ITEMS
    assert queue.get("a").state == queue.get("b").state == State.DONE
    assert queue.get("a").attempts == queue.get("b").attempts == 1
    assert queue.get("bad").state == State.DEAD
    assert not queue.faults["complete_and_lease"] and not queue.faults["fail"]


def test_lease_whose_reply_was_lost_is_not_leased_twice(redis_url: str, tmp_path: Path) -> None:
    """The reply of the lease script is lost once: the worker's retry gets the same lease back
    (same token, one attempt) instead of leaving an orphan lease to expire."""
    queue = RedisQueue.from_url(redis_url)
    queue._scripting = LostReply(queue._scripting, "lease")
    settings = Settings(
        root=tmp_path, queue_url=redis_url, worker=WorkerSettings(lease_ttl=30),
        tasks=SAMPLE_TASKS,
    )  # fmt: skip
    queue.push(_items("a"))
    worker = Worker(queue, settings.storage(), settings, "w1")
    assert _run_in_thread(worker, 30) == exitcodes.OK
    assert not queue._scripting.armed, "the reply was never lost"
    assert queue.get("a").attempts == 1 and queue.get("a").token == 1


def test_commit_and_lease_whose_reply_was_lost_is_not_leased_twice(
    redis_url: str, tmp_path: Path
) -> None:
    """The reply of the script that committed a and leased b is lost once: the worker's retry
    gets that lease back (b: one attempt, token 1) and a is published, nothing is left to
    expire."""
    queue = RedisQueue.from_url(redis_url)
    settings = Settings(
        root=tmp_path, queue_url=redis_url, worker=WorkerSettings(lease_ttl=30),
        tasks=SAMPLE_TASKS,
    )  # fmt: skip
    queue.push(_items("a", "b"))
    queue._scripting = LostReply(queue._scripting, "complete_and_lease")
    worker = Worker(queue, settings.storage(), settings, "w1")
    assert _run_in_thread(worker, 30) == exitcodes.OK
    assert not queue._scripting.armed, "the reply was never lost"
    assert [o.status for o in worker.outcomes] == ["done", "done"]
    assert [(queue.get(n).attempts, queue.get(n).token) for n in "ab"] == [(1, 1), (1, 1)]
    assert (tmp_path / "runs/default/out/a.txt").read_text() == "a by w1\n"


def test_unreachable_queue_past_the_budget_stops_the_worker_and_keeps_outputs(
    flaky: tuple[Flaky, Settings],
) -> None:
    queue, settings = flaky
    settings = settings.with_worker(queue_retry=0.3)
    queue.push(_items("a"))
    queue.inject("complete_and_lease", "after", *["before"] * 1000)
    worker = Worker(queue, settings.storage(), settings, "w1")  # type: ignore[arg-type]
    with pytest.raises(QueueUnavailable):
        _run_in_thread(worker, 30)  # the CLI turns this into exit 69
    # the commit did land: the staged output is kept, and the next worker rolls it forward
    assert queue.inner.get("a").state == State.DONE
    assert list((settings.root / ".staging").rglob("*%2Fa.txt"))  # flat: safe_name(final path)
    assert _run_in_thread(Worker(queue.inner, settings.storage(), settings), 30) == exitcodes.OK
    assert (settings.root / "runs/default/out/a.txt").read_text() == "a by w1\n"


def test_stop_during_lease_gives_the_item_back_untouched(flaky: tuple[Flaky, Settings]) -> None:
    queue, settings = flaky
    queue.push(_items("a"))
    worker = Worker(queue, settings.storage(), settings, "w1")  # type: ignore[arg-type]
    real_lease = queue.inner.lease

    def lease_then_sigterm(worker_id: str, ttl: float) -> Any:
        lease = real_lease(worker_id, ttl)
        worker.stop()  # as if SIGTERM arrived while the lease call was on its way
        return lease

    queue.inner.lease = lease_then_sigterm  # type: ignore[method-assign]
    assert _run_in_thread(worker, 30) == exitcodes.TERMINATED
    item = queue.get("a")
    assert item.state == State.READY and item.attempts == 0 and not worker.outcomes
    assert not os.path.exists(settings.root / "runs/default/out/a.txt")


def test_item_purged_while_it_runs_expires_without_publishing(
    redis_url: str, tmp_path: Path
) -> None:
    """Given a running item, when the queue loses it (purged; or a Redis restarted without its
    append-only file), then the heartbeat notices, the attempt publishes nothing, and the
    worker exits 65 (the queue lost its data) instead of dying on an unknown item or reading
    the emptied queue as drained."""
    queue = open_queue(redis_url)
    worker_settings = WorkerSettings(lease_ttl=5, heartbeat_every=0.1, poll_interval=0.02)
    settings = Settings(
        root=tmp_path / "root", queue_url=redis_url, worker=worker_settings, tasks=SAMPLE_TASKS
    )
    payload = {"task": "tests.sample_tasks:slow_write", "name": "gone", "seconds": 3}
    queue.push([ItemSpec(payload=payload, id="gone")])
    worker = Worker(queue, settings.storage(), settings, "w1")
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(worker.run()))
    thread.start()
    _wait_for(lambda: queue.get("gone").state == State.LEASED, 30, "the item to be leased")
    queue.purge()
    thread.join(30)
    assert outcome == [exitcodes.DATA_LOSS]
    assert [o.status for o in worker.outcomes] == ["expired"]
    assert not (settings.root / "runs/default/out/gone.txt").exists()

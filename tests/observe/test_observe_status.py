"""``queue status``: the snapshot (workers alive, throughput, dead items) and its two outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchml.observe import status
from batchml.observe.console import ago, sparkline
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, WorkerInfo
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli
from tests.support.clock import FakeClock


def spec(name: str) -> ItemSpec:
    return ItemSpec(payload={"task": "noop", "name": name}, id=name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> SqliteQueue:
    retry = RetryPolicy(max_attempts=1)
    return SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=retry, clock=clock))


def test_snapshot_counts_workers_throughput_and_dead(queue: SqliteQueue, clock: FakeClock) -> None:
    """Given two workers that did work over three minutes and a third that went silent,
    then the snapshot has the counts, who is alive, done per minute and the dead error."""
    queue.push([spec(n) for n in ("a", "b", "c", "d", "e")])
    queue.report_worker(WorkerInfo(id="silent", host="h3", pid=3, started_at=clock.now))
    for name, worker in (("a", "w1"), ("b", "w2")):
        lease = queue.lease(worker, ttl=30)
        assert lease and lease.item.id == name
        clock.advance(60)
        queue.complete(name, lease.token, {})
    lease = queue.lease("w1", ttl=30)
    assert lease
    queue.fail("c", lease.token, "ValueError: bad day")  # max_attempts=1: dead
    long_lease = queue.lease("w2", ttl=600)  # w2 holds d for a long task
    assert long_lease
    queue.report_worker(
        WorkerInfo(id="w2", host="h2", pid=2, started_at=0, state="working", item_id="d")
    )
    queue.report_worker(WorkerInfo(id="w1", host="h1", pid=1, started_at=0, state="exited"))
    clock.advance(120)  # w2 is silent for 120 s but still holds its lease; "silent" is gone

    data = status.gather(queue, "default", status.StatusOptions(stale_after=90, window_minutes=5))

    assert data["counts"] == {
        "waiting": 0, "ready": 1, "leased": 1, "done": 2, "dead": 1, "blocked": 0,
    }  # fmt: skip
    assert data["total"] == 5 and not data["drained"]
    alive = {w["id"]: w["alive"] for w in data["workers"]}
    assert alive == {"w2": True, "w1": False, "silent": False}
    assert data["workers"][0]["id"] == "w2" and data["workers"][0]["item_id"] == "d"
    minutes = data["throughput"]["minutes"]
    assert len(minutes) == 5
    assert sum(m.get("done", 0) for m in minutes) == 2
    assert sum(m.get("dead", 0) for m in minutes) == 1
    # 2 done over the 4 minutes observed (first lease to now), not over the 5-minute window
    assert data["throughput"]["done_per_minute"] == 0.5
    assert data["dead"] == [
        {"id": "c", "attempts": 1, "error": "ValueError: bad day", "updated_at": clock.now - 120}
    ]
    assert data["leased"][0]["worker"] == "w2"
    json.dumps(data)  # JSON-ready


def test_a_silent_worker_without_a_lease_is_gone(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.report_worker(WorkerInfo(id="w", host="h", pid=1, started_at=0, state="idle"))
    clock.advance(30)
    assert status.gather(queue, "r")["workers"][0]["alive"]
    clock.advance(100)
    assert not status.gather(queue, "r")["workers"][0]["alive"]


def test_helpers_render_durations_and_sparklines() -> None:
    assert [ago(None), ago(5), ago(185), ago(7300)] == ["-", "5s", "3m05s", "2h01m"]
    assert sparkline([{"done": 0}, {"done": 4}, {"done": 2}]) == "·█▄"
    assert sparkline([{}, {}]) == "··"


def test_status_command_text_and_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clock: FakeClock
) -> None:
    q = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    q.push([spec("x"), spec("y")])
    lease = q.lease("w-cli", ttl=30)
    assert lease
    q.fail("x", lease.token, "KeyError: 'TX_AMOUNT'")
    q.report_worker(WorkerInfo(id="w-cli", host="box", pid=7, started_at=0))
    base = ("--root", str(tmp_path), "--queue", q.url)

    text = run_cli(capsys, *base, "queue", "status")
    assert text.code == 0, text.err
    assert "workers: 1 alive, 0 gone" in text.out and "w-cli" in text.out
    assert "dead    x after 1 attempt(s): KeyError: 'TX_AMOUNT'" in text.out
    assert "lineage 'default': v0" in text.out

    as_json = run_cli(capsys, *base, "queue", "status", "--json")
    data = json.loads(as_json.out)
    assert data["counts"]["dead"] == 1 and data["counts"]["ready"] == 1
    assert data["workers"][0]["host"] == "box" and data["workers"][0]["alive"]


def test_status_shows_the_blocked_chain_and_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Given a dead item with two items chained behind it, then status counts them blocked,
    names the dead item in their reason (text and JSON) and the queue is drained."""
    q = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    q.push(
        [
            spec("x"),
            ItemSpec(payload={"task": "noop"}, id="y", depends_on=("x",)),
            ItemSpec(payload={"task": "noop"}, id="z", depends_on=("y",)),
        ]
    )
    lease = q.lease("w", ttl=30)
    assert lease
    q.fail("x", lease.token, "OSError: unreadable")
    base = ("--root", str(tmp_path), "--queue", q.url)

    text = run_cli(capsys, *base, "queue", "status")
    assert text.code == 0, text.err
    assert "blocked y: blocked: dependency x is dead: OSError: unreadable" in text.out
    assert "blocked z: blocked: dependency x is dead: OSError: unreadable" in text.out

    data = json.loads(run_cli(capsys, *base, "queue", "status", "--json").out)
    assert data["counts"]["blocked"] == 2 and data["counts"]["dead"] == 1 and data["drained"]
    assert data["blocked"] == [
        {"id": "y", "reason": "blocked: dependency x is dead: OSError: unreadable"},
        {"id": "z", "reason": "blocked: dependency x is dead: OSError: unreadable"},
    ]

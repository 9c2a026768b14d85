"""``queue status`` figures a new user can trust, checked against runs with a known number of
items on a hand-moved clock: the rate over the time observed, live worker rows, released
items not counted as processed, ids never cut at 80 columns, per-run counts, a stable JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from batchml.observe import console, status
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, WorkerInfo
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli
from tests.support.clock import FakeClock


def noop(name: str, run: str | None = None) -> ItemSpec:
    payload = {"task": "noop", "name": name, **({"run": run} if run else {})}
    return ItemSpec(payload=payload, id=name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> SqliteQueue:
    return SqliteQueue(
        tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=2), clock=clock)
    )


def test_94_items_in_15_seconds_are_376_per_minute(queue: SqliteQueue, clock: FakeClock) -> None:
    """Given 94 items each leased and committed over 15 s in all, then the rate is 376/min
    (94 over the quarter of a minute observed), not 9.4 (94 over the ten-minute window)."""
    queue.push([noop(f"i{k:03d}") for k in range(94)])
    step = 15.0 / 94
    for _ in range(94):
        lease = queue.lease("w", ttl=30)
        assert lease is not None
        clock.advance(step)
        queue.complete(lease.item.id, lease.token, {})
    data = status.gather(queue, "default")
    t = data["throughput"]
    assert t["done"] == 94 and t["observed_seconds"] == pytest.approx(15.0, abs=0.01)
    assert t["done_per_minute"] == pytest.approx(376.0, abs=0.5)
    line = console.throughput_line(data).plain
    assert "94 done in 15s (376/min)" in line, line
    clock.advance(120)  # the batch is over: the rate stays that of the time it took
    assert status.gather(queue, "default")["throughput"]["done_per_minute"] == pytest.approx(
        376.0, abs=0.5
    )


def test_worker_rows_are_read_from_the_leases_not_a_stale_report(
    queue: SqliteQueue, clock: FakeClock
) -> None:
    """Given a worker whose last report said idle with 0 done, then it committed one item,
    released another and now holds a third without reporting: status says it works on the
    third and has done 1 (the released item is not processed)."""
    queue.push([noop("a"), noop("b"), noop("c")])
    queue.report_worker(WorkerInfo(id="w", host="h", pid=1, started_at=0, state="idle"))
    clock.advance(1)
    lease = queue.lease("w", ttl=30)
    assert lease is not None and lease.item.id == "a"
    queue.complete("a", lease.token, {})
    lease = queue.lease("w", ttl=30)
    assert lease is not None and lease.item.id == "b"
    queue.release("b", lease.token)
    clock.advance(1)
    lease = queue.lease("w", ttl=30)
    assert lease is not None
    held = lease.item.id
    clock.advance(4)

    row = status.gather(queue, "default")["workers"][0]
    assert (row["state"], row["item_id"], row["processed"]) == ("working", held, 1)
    assert row["item_since"] == pytest.approx(clock.now - 4)


def test_long_ids_are_folded_not_cut_at_80_columns(queue: SqliteQueue) -> None:
    long_id = "train:an-experiment-with-a-rather-long-run-name:2018-04-01"
    queue.push([noop(long_id)])
    queue.report_worker(
        WorkerInfo(id="pod-batchml-train-7f9c-abcdef-1234", host="gke-node", pid=1, started_at=0)
    )
    assert queue.lease("pod-batchml-train-7f9c-abcdef-1234", ttl=30)
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=False).print(
        console.render(status.gather(queue, "default"))
    )
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    cells = "".join(line.split("│")[4].strip() for line in text.splitlines() if line.count("│") > 6)
    assert long_id in cells, text


def test_status_json_schema_and_per_run_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Given items of two runs, then `--run a queue status --json` counts run a's items apart
    from the queue's, every state and outcome key is there with its zeros, and no
    `.staging/` path leaks out."""
    q = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    q.push([noop("shared"), noop("a1", "a"), noop("a2", "a"), noop("b1", "b")])
    lease = q.lease("w", ttl=30)
    assert lease is not None and lease.item.id == "shared"
    q.complete("shared", lease.token, {})
    base = ("--root", str(tmp_path), "--queue", q.url)

    plain = json.loads(run_cli(capsys, *base, "queue", "status", "--json").out)
    assert plain["run_counts"] is None
    data = json.loads(run_cli(capsys, *base, "--run", "a", "queue", "status", "--json").out)
    states = ["waiting", "ready", "leased", "done", "dead", "blocked"]
    assert list(data["counts"]) == states and list(data["run_counts"]) == states
    assert data["counts"]["ready"] == 3 and data["counts"]["done"] == 1
    assert data["run_counts"] == {s: 2 if s == "ready" else 0 for s in states}
    for minute in data["throughput"]["minutes"]:
        assert set(minute) == {"start", "done", "failed", "dead", "released", "expired"}
    assert {"window_minutes", "done", "observed_seconds", "done_per_minute"} <= set(
        data["throughput"]
    )
    assert set(data) == {
        "queue", "run", "now", "counts", "run_counts", "total", "drained", "lineage_head",
        "workers", "throughput", "leased", "dead", "blocked",
    }  # fmt: skip
    text = run_cli(capsys, *base, "--run", "a", "queue", "status").out
    assert "run 'a'" in text


def test_status_json_has_no_staging_path_after_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = str(tmp_path / "r")
    cli = ("--root", root)
    assert run_cli(capsys, *cli, "data", "generate", "--days", "2", "--customers", "50",
                   "--terminals", "100").code == 0  # fmt: skip
    assert run_cli(capsys, *cli, "queue", "push", "--model", "sgd").code == 0
    assert run_cli(capsys, *cli, "worker", "--poll", "0.05").code == 0
    out = run_cli(capsys, *cli, "queue", "status", "--json").out
    data = json.loads(out)
    assert data["lineage_head"]["version"] == 2
    assert data["lineage_head"]["checkpoint"]["final"].startswith("runs/default/checkpoints/")
    assert ".staging" not in out


def test_a_worker_reports_only_committed_items_as_processed(tmp_path: Path) -> None:
    """Given a worker that committed one item and released another, then its own report
    says 1 processed, not 2."""
    from batchml.queue.base import Outcome
    from batchml.settings import Settings
    from batchml.worker.loop import Ended, Worker

    settings = Settings(root=tmp_path / "root")
    q = SqliteQueue(tmp_path / "queue.db")
    worker = Worker(q, settings.storage(), settings, "w")
    worker.outcomes += [Ended("a", Outcome.DONE, 0.1), Ended("b", Outcome.RELEASED, 0.1)]
    worker._report("idle")
    assert [w.processed for w in q.workers()] == [1]

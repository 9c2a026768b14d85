"""The worker's progress: items left in the queue, the rate and an ETA, on a terminal and off."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from batchml import exitcodes
from batchml.observe.progress import WorkerProgress, describe
from batchml.queue.base import ItemSpec, State
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli


def test_off_a_terminal_the_worker_logs_items_left_rate_and_eta(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Given 5 items and a worker that reports after every item, then its log counts them
    down, 4 left … 0 left, with a rate and an ETA, and says it once more on exit."""
    cli = ("--root", str(tmp_path))
    for k in range(5):
        assert run_cli(capsys, *cli, "queue", "add", "noop", "--id", f"n{k}").code == 0
    worker = run_cli(capsys, *cli, "worker", "--poll", "0.05", "--progress-every", "0")
    assert worker.code == 0, worker.err
    lines = re.findall(r"progress: (\d+) done, (\d+) left in the queue, ([\d.]+) items/min, "
                       r"ETA (\S+)", worker.err)  # fmt: skip
    assert [(int(d), int(left)) for d, left, _, _ in lines] == [(k, 5 - k) for k in range(1, 6)]
    assert all(float(rate) > 0 for _, _, rate, _ in lines)
    assert lines[-1][3] == "-" and all(eta != "-" for *_, eta in lines[:-1])


def test_on_a_terminal_one_live_line_then_the_last_in_the_log(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue.db")
    q.push([ItemSpec(payload={"task": "noop"}, id=f"n{k}") for k in range(3)])
    out = io.StringIO()
    clock = iter(float(t) for t in range(100))
    progress = WorkerProgress(
        q, Console(file=out, force_terminal=True, width=100), every=0, clock=lambda: next(clock)
    )
    progress.on_start("w")
    lease = q.lease("w", ttl=30)
    assert lease is not None
    q.complete(lease.item.id, lease.token, {})
    progress.on_outcome(lease.item.id, "done", 0.1)
    progress.on_exit(0)
    assert "progress: 1 done, 2 left in the queue" in out.getvalue()
    assert progress.line.startswith("progress: 1 done, 2 left in the queue, 30.0 items/min")


def test_the_eta_is_what_is_left_at_the_rate_seen() -> None:
    counts = {s: 0 for s in State}
    counts.update({State.DONE: 30, State.READY: 50, State.LEASED: 10, State.BLOCKED: 2})
    line = describe(counts, done_at_start=0, elapsed=60.0)  # 30 items in the last minute
    assert line == "progress: 30 done, 60 left in the queue (2 blocked), 30.0 items/min, ETA 2m00s"
    idle = describe(counts, done_at_start=30, elapsed=60.0)
    assert idle.endswith("0.0 items/min, ETA unknown")


def test_a_worker_leaving_an_unreachable_queue_does_not_ask_it_for_counts(tmp_path: Path) -> None:
    """Exit 69 means the queue stayed unreachable: the progress line's last update must not ask
    it again (each call waited a socket timeout, which made a black-holed worker overrun its
    bound by 10 s)."""
    q = SqliteQueue(tmp_path / "queue.db")
    q.push([ItemSpec(payload={"task": "noop"}, id="n0")])
    progress = WorkerProgress(q, Console(file=io.StringIO()), every=0)
    progress.on_start("w")
    asked: list[int] = []
    real = q.counts

    def counting() -> dict[State, int]:
        asked.append(1)
        return real()

    q.counts = counting  # type: ignore[method-assign]
    progress.on_exit(exitcodes.UNAVAILABLE)
    assert asked == []
    progress.on_exit(exitcodes.OK)
    assert asked == [1]

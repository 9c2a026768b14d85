"""What every network fault case asserts, and the figures it reports."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchml.queue.base import ItemSpec, State, WorkQueue
from batchml.settings import Settings
from tests.sample_tasks import SAMPLE_TASKS

TASK = "tests.sample_tasks:logged_attempt"


@dataclass
class Figures:
    items: int
    executed: int  # attempts that started the task (files in ``attempts``)
    published: int  # outputs visible under their final names

    @property
    def duplicates_executed(self) -> int:
        return self.executed - self.items


def push_items(
    queue: WorkQueue, attempts: Path, n: int, seconds: float, check: bool = True
) -> list[str]:
    attempts.mkdir(parents=True, exist_ok=True)
    ids = [f"i{k:02d}" for k in range(n)]
    payload = {"task": TASK, "attempts": str(attempts), "seconds": seconds, "check": check}
    queue.push([ItemSpec(payload={**payload, "name": i}, id=i) for i in ids])
    return ids


def settings(root: Path, url: str) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    return Settings(root=root, queue_url=url, tasks=SAMPLE_TASKS, max_attempts=10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def exit_codes(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """Every worker's exit code; a worker still running after ``timeout`` s fails the test
    (and is killed, so nothing outlives it)."""
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a worker was still running {timeout}s on (pid {proc.pid}): a hang")
    return codes


def assert_exactly_once(queue: WorkQueue, root: Path, attempts: Path, ids: list[str]) -> Figures:
    """Every item done once; each published output is the one of its committed attempt (no
    fenced attempt published); nothing left staged; the figures."""
    counts = queue.counts()
    assert counts[State.DONE] == len(ids) and counts[State.DEAD] == 0, counts
    done = {h.item_id: h for h in queue.history(10_000) if h.outcome == "done"}
    committed = [h.item_id for h in queue.history(10_000) if h.outcome == "done"]
    assert sorted(committed) == sorted(ids), "an item was committed twice or not at all"
    out = root / "runs/default/out"
    published = sorted(p.stem for p in out.glob("*.txt"))
    assert published == sorted(ids)
    for item_id in ids:
        commit = done[item_id]
        first = (out / f"{item_id}.txt").read_text().splitlines()[0]
        assert first == f"{item_id} {commit.token} {commit.worker}", (
            f"{item_id}: the published output is {first!r}, not the committed attempt's "
            f"(token {commit.token}, {commit.worker}): a fenced attempt published"
        )
    staged = [p for p in (root / ".staging").rglob("*") if p.is_file()]
    assert not staged, f"half-written outputs left in staging: {staged}"
    executed = len(list(attempts.iterdir()))
    assert executed >= len(ids)
    return Figures(items=len(ids), executed=executed, published=len(published))

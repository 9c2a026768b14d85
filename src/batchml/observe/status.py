"""One snapshot of a queue, as plain JSON-ready data, for ``queue status`` and the dashboard.

What it costs: ``counts()``, the leased, dead and blocked items (at most ``dead_limit`` of the
last two), the worker reports, one lineage head and the most recent attempts
(``history(limit)``) — a handful of queries, no scan of the done items.

A worker counts as *alive* unless it said it exited and either it reported within
``stale_after`` seconds or it still holds an unexpired lease (a worker reports when it leases an
item and while idle; a long task renews its lease, not its report).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from batchml.queue.base import AttemptRecord, Item, State, WorkerInfo, WorkQueue


@dataclass(frozen=True)
class StatusOptions:
    """How much a snapshot looks back."""

    stale_after: float = 90.0  # seconds without a report before a worker counts as gone
    window_minutes: int = 10  # throughput is counted per minute over this many minutes
    history_limit: int = 5000  # most recent attempts read for the throughput
    dead_limit: int = 100  # dead (and blocked) items listed (the counts are always exact)


def _alive(info: WorkerInfo, now: float, holders: dict[str, float], stale_after: float) -> bool:
    if info.state == "exited":
        return False
    if now - info.last_seen <= stale_after:
        return True
    return holders.get(info.id, 0.0) > now


def worker_rows(
    workers: list[WorkerInfo], leased: list[Item], now: float, stale_after: float
) -> list[dict[str, Any]]:
    """Worker reports with ``alive`` and ``seen_ago`` (seconds), alive ones first."""
    holders: dict[str, float] = {}
    for item in leased:
        if item.worker and item.deadline:
            holders[item.worker] = max(holders.get(item.worker, 0.0), item.deadline)
    rows = [
        {
            **info.to_json(),
            "alive": _alive(info, now, holders, stale_after),
            "seen_ago": round(max(now - info.last_seen, 0.0), 3),
        }
        for info in workers
    ]
    return sorted(rows, key=lambda r: (not r["alive"], r["seen_ago"], r["id"]))


def throughput(history: list[AttemptRecord], now: float, window_minutes: int) -> dict[str, Any]:
    """Ended attempts per minute over the last ``window_minutes``, oldest minute first.

    Each minute is a dict of outcome counts (done, failed, dead, released, expired); the rate is
    committed items per minute over the whole window.
    """
    start = now - 60.0 * window_minutes
    minutes: list[Counter[str]] = [Counter() for _ in range(window_minutes)]
    for attempt in history:
        if start <= attempt.ended_at <= now:
            slot = min(int((attempt.ended_at - start) // 60), window_minutes - 1)
            minutes[slot][attempt.outcome] += 1
    done = sum(m["done"] for m in minutes)
    return {
        "window_minutes": window_minutes,
        "done_per_minute": round(done / window_minutes, 3),
        "minutes": [
            {"start": round(start + 60.0 * k, 3), **dict(sorted(m.items()))}
            for k, m in enumerate(minutes)
        ],
    }


def gather(q: WorkQueue, run: str, options: StatusOptions | None = None) -> dict[str, Any]:
    """A JSON-ready snapshot of the queue and of the run's lineage head."""
    options = options or StatusOptions()
    now = q.clock()
    counts = q.counts()
    leased = q.items([State.LEASED])
    dead = q.items([State.DEAD], limit=options.dead_limit)
    blocked = q.items([State.BLOCKED], limit=options.dead_limit) if counts[State.BLOCKED] else []
    return {
        "queue": q.url,
        "run": run,
        "now": now,
        "counts": {state.value: counts[state] for state in State},
        "total": sum(counts.values()),
        "drained": counts[State.WAITING] + counts[State.READY] + counts[State.LEASED] == 0,
        "lineage_head": q.lineage_head(run).to_json(),
        "workers": worker_rows(q.workers(), leased, now, options.stale_after),
        "throughput": throughput(q.history(options.history_limit), now, options.window_minutes),
        "leased": [
            {"id": i.id, "worker": i.worker, "attempt": i.attempts, "deadline": i.deadline}
            for i in leased
        ],
        "dead": [
            {"id": i.id, "attempts": i.attempts, "error": i.last_error, "updated_at": i.updated_at}
            for i in dead
        ],
        "blocked": [{"id": i.id, "reason": i.last_error} for i in blocked],
    }

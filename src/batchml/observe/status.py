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
    workers: list[WorkerInfo],
    leased: list[Item],
    now: float,
    stale_after: float,
    history: list[AttemptRecord] | None = None,
) -> list[dict[str, Any]]:
    """Worker reports with ``alive`` and ``seen_ago`` (seconds), alive ones first.

    What a worker holds is read from the queue's leases, not from its last report (which a
    worker sends at most once per heartbeat interval): a worker without a lease is ``idle``
    (or its reported ``exited``/``stopping``), one with a lease is ``working`` on it since the
    lease began. ``processed`` counts the items it committed: its report, plus the commits in
    ``history`` since that report (released, failed and abandoned attempts are not counted).
    """
    holders: dict[str, float] = {}
    holding: dict[str, Item] = {}
    for item in leased:
        if item.worker and item.deadline:
            holders[item.worker] = max(holders.get(item.worker, 0.0), item.deadline)
            holding[item.worker] = item
    rows = []
    for info in workers:
        row = {
            **info.to_json(),
            "alive": _alive(info, now, holders, stale_after),
            "seen_ago": round(max(now - info.last_seen, 0.0), 3),
        }
        held = holding.get(info.id)
        if held is not None:
            # the report names the lease once its first heartbeat went out; before that the
            # lease is younger than one renewal, and its last update is when it began
            since = info.item_since if info.item_id == held.id else held.updated_at
            row.update(state="working", item_id=held.id, item_since=since)
        elif info.state == "working":
            row.update(state="idle", item_id=None, item_since=None)
        since_report = [
            a for a in history or () if a.worker == info.id and a.ended_at > info.last_seen
        ]
        row["processed"] = info.processed + sum(a.outcome == "done" for a in since_report)
        rows.append(row)
    return sorted(rows, key=lambda r: (not r["alive"], r["seen_ago"], r["id"]))


#: every outcome an attempt can end with: each minute of the throughput has all of them
OUTCOMES = ("done", "failed", "dead", "released", "expired")


def throughput(
    history: list[AttemptRecord], now: float, window_minutes: int, *, busy: bool = True
) -> dict[str, Any]:
    """Ended attempts per minute over the last ``window_minutes``, oldest minute first.

    Each minute is a dict of outcome counts (every one of :data:`OUTCOMES`, zeros included).
    The rate is committed items per minute over the time actually observed: from the start of
    the first attempt that ended in the window (or the window's start, if earlier) to now, or,
    when the queue is not ``busy`` (drained), to the last attempt's end; so 94 items done in
    15 s are 376/min, not 9.4, and stay so once the batch is over. ``observed_seconds`` is
    that span (0 when nothing ended in the window, and the rate is then 0).
    """
    start = now - 60.0 * window_minutes
    minutes: list[Counter[str]] = [Counter() for _ in range(window_minutes)]
    first: float | None = None
    last = start
    for attempt in history:
        if start <= attempt.ended_at <= now:
            slot = min(int((attempt.ended_at - start) // 60), window_minutes - 1)
            minutes[slot][attempt.outcome] += 1
            began = max(min(attempt.started_at, attempt.ended_at), start)
            first = began if first is None else min(first, began)
            last = max(last, attempt.ended_at)
    done = sum(m["done"] for m in minutes)
    observed = max((now if busy else last) - first, 1.0) if first is not None else 0.0
    return {
        "window_minutes": window_minutes,
        "done": done,
        "observed_seconds": round(observed, 3),
        "done_per_minute": round(60.0 * done / observed, 3) if observed else 0.0,
        "minutes": [
            {"start": round(start + 60.0 * k, 3), **{o: m[o] for o in OUTCOMES}}
            for k, m in enumerate(minutes)
        ],
    }


def _head_json(q: WorkQueue, run: str) -> dict[str, Any]:
    """The run's lineage head without the attempt-private ``.staging/`` path of its commit."""
    head = q.lineage_head(run).to_json()
    if head.get("checkpoint"):
        head["checkpoint"] = {k: v for k, v in head["checkpoint"].items() if k != "staged"}
    return head


def run_counts(q: WorkQueue, run: str) -> dict[str, int]:
    """Items per state of one run: those whose payload names it, and the items they depend
    on that belong to no run (the shared features of its days). Reads every item."""
    items = q.items()
    mine = {i.id for i in items if i.payload.get("run") == run}
    needed = {d for i in items if i.id in mine for d in i.depends_on}
    counts = Counter(
        i.state.value
        for i in items
        if i.id in mine or (i.id in needed and i.payload.get("run") is None)
    )
    return {state.value: counts[state.value] for state in State}


def gather(
    q: WorkQueue, run: str, options: StatusOptions | None = None, *, per_run: bool = False
) -> dict[str, Any]:
    """A JSON-ready snapshot of the queue and of the run's lineage head (schema:
    docs/status.md). With ``per_run``, ``run_counts`` has the run's items per state (it
    reads every item), else it is None."""
    options = options or StatusOptions()
    now = q.clock()
    history = q.history(options.history_limit)
    counts = q.counts()
    drained = counts[State.WAITING] + counts[State.READY] + counts[State.LEASED] == 0
    leased = q.items([State.LEASED])
    dead = q.items([State.DEAD], limit=options.dead_limit)
    blocked = q.items([State.BLOCKED], limit=options.dead_limit) if counts[State.BLOCKED] else []
    return {
        "queue": q.url,
        "run": run,
        "now": now,
        "counts": {state.value: counts[state] for state in State},
        "total": sum(counts.values()),
        "drained": drained,
        "run_counts": run_counts(q, run) if per_run else None,
        "lineage_head": _head_json(q, run),
        "workers": worker_rows(q.workers(), leased, now, options.stale_after, history),
        "throughput": throughput(history, now, options.window_minutes, busy=not drained),
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

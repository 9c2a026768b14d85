"""The SQLite side of :meth:`batchml.queue.base.WorkQueue.reset_lineage`, inside the caller's
``BEGIN IMMEDIATE`` transaction: a refusal raises before anything changed, and the transaction
is rolled back on any error, so the reset lands whole or not at all."""

from __future__ import annotations

import sqlite3

from batchml.errors import QueueError, UnknownItem
from batchml.queue.sqlite import deps

_ENDED = "('done', 'dead')"


def reset_lineage(
    db: sqlite3.Connection, url: str, run: str, to_version: int, rearm: list[str], now: float
) -> None:
    """Move the run's head back to ``to_version`` and re-arm the ``rearm`` ids (no duplicates)."""
    _check(db, url, run, to_version, rearm)
    db.execute("DELETE FROM lineage WHERE run = ? AND version > ?", (run, to_version))
    # every re-armed item first leaves its state (waiting, for now), then each is resolved from
    # its dependencies (ready only when all are done, blocked behind a dead one) and so are the
    # items downstream of it: the outcome does not depend on the order of the list
    for item_id in rearm:
        db.execute(
            "UPDATE items SET state = 'waiting', attempts = 0, last_error = NULL, result = NULL, "
            "outputs = '[]', updated_at = ? WHERE id = ?",
            (now, item_id),
        )
    for item_id in rearm:
        deps.resolve(db, item_id, now)
    for item_id in rearm:
        deps.settle_dependents(db, item_id, now)


def _check(db: sqlite3.Connection, url: str, run: str, to_version: int, rearm: list[str]) -> None:
    """Refuse a reset that cannot be applied (see WorkQueue.reset_lineage)."""
    versions = {v for (v,) in db.execute("SELECT version FROM lineage WHERE run = ?", (run,))}
    if to_version != 0 and to_version not in versions:
        raise QueueError(f"lineage {run!r} has no version {to_version} in {url}")
    marks = ",".join("?" * len(rearm))
    found = {r[0] for r in db.execute(f"SELECT id FROM items WHERE id IN ({marks})", rearm)}
    missing = [i for i in rearm if i not in found]
    if missing:
        raise UnknownItem(f"no item {missing[0]!r} in {url}")
    leased = db.execute(
        f"SELECT id FROM items WHERE state = 'leased' AND (id IN ({marks}) OR "
        "json_extract(payload, '$.run') = ?) ORDER BY seq LIMIT 1",
        (*rearm, run),
    ).fetchone()
    if leased:
        raise QueueError(leased_message(leased[0], run))
    blocking = db.execute(
        "SELECT i.id, d.depends_on FROM deps d JOIN items i ON i.id = d.item_id "
        f"JOIN items e ON e.id = d.depends_on WHERE d.depends_on IN ({marks}) "
        f"AND i.id NOT IN ({marks}) AND i.state IN ('ready', 'leased') "
        f"AND e.state IN {_ENDED} ORDER BY i.seq LIMIT 1",
        (*rearm, *rearm),
    ).fetchone()
    if blocking:
        raise QueueError(dependent_message(blocking[0], blocking[1]))


def leased_message(item_id: str, run: str) -> str:
    return (
        f"item {item_id} of run {run!r} is leased: a running step would commit against the "
        "moved head; stop the workers (or wait until they finish) and retry"
    )


def dependent_message(item_id: str, dependency: str) -> str:
    return (
        f"item {item_id} is ready or leased and depends on {dependency}, which the reset "
        "re-arms; re-arm it too"
    )

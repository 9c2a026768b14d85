"""Strict dependencies of the SQLite queue: ready only when every dependency is done.

Each function runs inside the caller's ``BEGIN IMMEDIATE`` transaction (:mod:`.sqlite`).

- :func:`mark_dead` is the one way an item becomes dead (a last failed attempt, a lease lost
  too often): its dependents, transitively, become ``blocked`` with the reason recorded in
  their ``last_error``.
- :func:`resolve` recomputes the state of an item that is not running from its dependencies:
  ``blocked`` when one is dead or blocked, else ``waiting`` (``pending_deps`` = how many are
  not done) or ``ready``.
- :func:`settle_dependents` re-resolves the dependents of an item that left ``dead`` or
  ``done`` (requeued, or reset by a forced push), transitively while their state changes.
"""

from __future__ import annotations

import json
import sqlite3

from batchml.errors import QueueError
from batchml.queue.base import State

#: the states an item's dependencies decide (a leased, done or dead item keeps its own)
SETTLED_BY_DEPS = (State.WAITING, State.READY, State.BLOCKED)


def blocked_reason(dep: str, dep_state: str, dep_error: str | None) -> str:
    """``blocked: dependency X is dead: <its error>``; a blocked dependency passes its own on."""
    if dep_state == State.BLOCKED and dep_error:
        return dep_error
    return f"blocked: dependency {dep} is dead: {dep_error or 'no error recorded'}"


def _dependents(db: sqlite3.Connection, item_id: str) -> list[tuple[str, str]]:
    return db.execute(
        "SELECT id, state FROM items WHERE id IN (SELECT item_id FROM deps WHERE depends_on = ?)"
        " ORDER BY seq",
        (item_id,),
    ).fetchall()


def mark_dead(db: sqlite3.Connection, item_id: str, error: str, now: float) -> None:
    """Make the item dead with ``error`` and block every item that (transitively) needs it."""
    db.execute(
        "UPDATE items SET state = 'dead', worker = NULL, deadline = NULL, last_error = ?, "
        "updated_at = ? WHERE id = ?",
        (error, now, item_id),
    )
    block_dependents(db, item_id, blocked_reason(item_id, State.DEAD, error), now)


def block_dependents(db: sqlite3.Connection, item_id: str, reason: str, now: float) -> None:
    """Every waiting or ready item downstream of ``item_id`` becomes blocked by ``reason``."""
    frontier = [item_id]
    while frontier:
        for dep_id, state in _dependents(db, frontier.pop()):
            if state in (State.WAITING, State.READY):
                db.execute(
                    "UPDATE items SET state = 'blocked', last_error = ?, updated_at = ? "
                    "WHERE id = ?",
                    (reason, now, dep_id),
                )
                frontier.append(dep_id)


def resolve(db: sqlite3.Connection, item_id: str, now: float) -> State:
    """Set a not-running item's state from its dependencies' (see the module docstring)."""
    state, error = db.execute(
        "SELECT state, last_error FROM items WHERE id = ?", (item_id,)
    ).fetchone()
    deps = db.execute(
        "SELECT i.id, i.state, i.last_error FROM deps d JOIN items i ON i.id = d.depends_on "
        "WHERE d.item_id = ? ORDER BY i.seq",
        (item_id,),
    ).fetchall()
    stuck = [d for d in deps if d[1] in (State.DEAD, State.BLOCKED)]
    if stuck:
        reason = blocked_reason(*stuck[0])
        if state != State.BLOCKED or error != reason:
            db.execute(
                "UPDATE items SET state = 'blocked', last_error = ?, updated_at = ? WHERE id = ?",
                (reason, now, item_id),
            )
        return State.BLOCKED
    pending = sum(1 for d in deps if d[1] != State.DONE)
    new = State.WAITING if pending else State.READY
    if new == state:
        db.execute("UPDATE items SET pending_deps = ? WHERE id = ?", (pending, item_id))
        return new
    cleared = error if state != State.BLOCKED else None  # a blocked item's error was the reason
    db.execute(
        "UPDATE items SET state = ?, pending_deps = ?, available_at = ?, last_error = ?, "
        "updated_at = ? WHERE id = ?",
        (new.value, pending, now, cleared, now, item_id),
    )
    return new


def settle_dependents(db: sqlite3.Connection, item_id: str, now: float) -> None:
    """Re-resolve the items downstream of ``item_id``, as far as their states change."""
    frontier = [item_id]
    while frontier:
        for dep_id, state in _dependents(db, frontier.pop()):
            if state in SETTLED_BY_DEPS and resolve(db, dep_id, now) != state:
                frontier.append(dep_id)


def check_acyclic(db: sqlite3.Connection, item_id: str, depends_on: tuple[str, ...]) -> None:
    """QueueError if ``item_id`` depending on ``depends_on`` would close a cycle."""
    for dep in depends_on:
        found = db.execute(
            "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT d.depends_on FROM deps d "
            "JOIN up ON d.item_id = up.id) SELECT 1 FROM up WHERE id = ? LIMIT 1",
            (dep, item_id),
        ).fetchone()
        if found:
            raise QueueError(
                f"item {item_id}: depending on {dep!r} would make a cycle ({dep} already "
                f"depends on {item_id}); push it with other dependencies"
            )


def reset(
    db: sqlite3.Connection, item_id: str, payload: str, depends_on: tuple[str, ...], now: float
) -> None:
    """A forced push of an item that is not leased: the spec's payload and dependencies, fresh
    attempts, no result; its state resolved again, and its dependents'."""
    check_acyclic(db, item_id, depends_on)
    db.execute("DELETE FROM deps WHERE item_id = ?", (item_id,))
    db.executemany(
        "INSERT OR IGNORE INTO deps (depends_on, item_id) VALUES (?, ?)",
        [(dep, item_id) for dep in depends_on],
    )
    db.execute(
        "UPDATE items SET state = 'waiting', payload = ?, depends_on = ?, attempts = 0, "
        "worker = NULL, deadline = NULL, last_error = NULL, result = NULL, outputs = '[]', "
        "available_at = ?, updated_at = ? WHERE id = ?",
        (payload, json.dumps(list(depends_on)), now, now, item_id),
    )
    resolve(db, item_id, now)
    settle_dependents(db, item_id, now)


def requeue(db: sqlite3.Connection, item_id: str, now: float) -> None:
    """A dead item gets fresh attempts; it and its blocked dependents are resolved again."""
    db.execute(
        "UPDATE items SET state = 'waiting', attempts = 0, updated_at = ? WHERE id = ?",
        (now, item_id),
    )
    resolve(db, item_id, now)
    settle_dependents(db, item_id, now)

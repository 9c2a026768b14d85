"""The embedded queue: one SQLite file in WAL mode, shared by the processes of one machine.

Every state change is one ``BEGIN IMMEDIATE`` transaction, so concurrent workers serialise on
SQLite's write lock (with a busy timeout) and never see half a step. Expired leases are found
through a partial index on the deadline of leased items: reclaiming costs O(log n + expired).

The queue's generation (:meth:`~batchml.queue.base.WorkQueue.generation`) is a row of the
``meta`` table, made with the file; a file written before generations gets the table and a
generation on its first open. A purge deletes the row and the next push makes a new one.

SQLite's locking is not safe on network file systems: the file must live on a local disk
(docs/design.md). A path on NFS is refused; use ``redis://`` to share a queue between machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchml.errors import (
    ConfigError,
    LeaseLost,
    LineageConflict,
    QueueCorrupt,
    QueueError,
    QueueUnavailable,
    UnknownItem,
)
from batchml.queue.base import (
    MAX_BATCH,
    WORKER_RETENTION,
    AttemptRecord,
    Commit,
    Item,
    ItemSpec,
    Lease,
    LineageHead,
    LineageStep,
    Outcome,
    PushOutcome,
    QueueOptions,
    State,
    WorkerInfo,
    WorkQueue,
    canonical_json,
)
from batchml.queue.sqlite import deps
from batchml.queue.sqlite.fs import on_network_fs
from batchml.queue.sqlite.reset import reset_lineage
from batchml.queue.sqlite.schema import SCHEMA, SCHEMA_VERSION, first_generation
from batchml.storage import Publication

_ITEM_COLUMNS = (
    "id, payload, state, priority, attempts, max_attempts, token, worker, deadline, "
    "available_at, depends_on, last_error, result, outputs, created_at, updated_at, leased_at"
)

#: attempts kept in the history table; older rows are trimmed as new ones arrive
HISTORY_LIMIT = 10_000


#: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGED = (11, 26)


def _is_damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGED


def _translate(path: Path, exc: sqlite3.Error, unavailable: str) -> QueueError:
    """sqlite3's error as ours: a damaged file is QueueCorrupt (no retry brings it back),
    anything else QueueUnavailable with the message ``unavailable``."""
    if _is_damaged(exc):
        return QueueCorrupt(
            f"the SQLite queue {path} is damaged ({exc}): a retry cannot fix it; restore the "
            "file from a backup, or move it aside and queue the work again"
        )
    return QueueUnavailable(unavailable)


@dataclass(frozen=True)
class _Held:
    """The lease row of an item whose token was just checked."""

    worker: str
    leased_at: float
    attempts: int
    max_attempts: int
    deadline: float


class SqliteQueue(WorkQueue):
    """A WorkQueue in one SQLite database file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: QueueOptions | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(options)
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self.timeout = timeout
        fs_type = on_network_fs(self.path.parent if not self.path.exists() else self.path)
        if fs_type:
            raise ConfigError(
                f"{self.path} is on a network file system ({fs_type}); SQLite's locks are not "
                "safe there. Keep the SQLite queue on a local disk or use --queue redis://..."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueUnavailable(f"cannot create {self.path.parent}: {exc.strerror}") from None
        self._local = threading.local()
        self._create_schema()

    def _create_schema(self) -> None:
        conn = self._connection()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} was written by a newer batchml (schema {version}); upgrade"
                )
            conn.executescript(
                f"BEGIN IMMEDIATE; {SCHEMA} {first_generation(uuid.uuid4().hex)} "
                f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        except sqlite3.Error as exc:
            raise _translate(
                self.path, exc, f"cannot initialise the SQLite queue {self.path}: {exc}"
            ) from None

    # -- connection and transactions ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except sqlite3.Error as exc:
            msg = f"cannot open the SQLite queue {self.path}: {exc}"
            raise _translate(self.path, exc, msg) from None
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _translate(
                self.path, exc, f"SQLite queue {self.path} is busy or unreadable: {exc}"
            ) from None
        try:
            yield conn
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if _is_damaged(exc):
                raise _translate(self.path, exc, str(exc)) from None
            raise
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            msg = f"SQLite queue {self.path}: commit failed: {exc}"
            raise _translate(self.path, exc, msg) from None

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _translate(self.path, exc, f"SQLite queue {self.path}: {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _item(row: Sequence[Any]) -> Item:
        return Item(
            id=row[0],
            payload=json.loads(row[1]),
            state=State(row[2]),
            priority=row[3],
            attempts=row[4],
            max_attempts=row[5],
            token=row[6],
            worker=row[7],
            deadline=row[8],
            available_at=row[9],
            depends_on=tuple(json.loads(row[10])),
            last_error=row[11],
            result=json.loads(row[12]) if row[12] is not None else None,
            outputs=tuple(Publication.from_json(p) for p in json.loads(row[13])),
            created_at=row[14],
            updated_at=row[15],
        )

    def _log(
        self, db: sqlite3.Connection, item_id: str, token: int, worker: str, started: float,
        now: float, outcome: Outcome, error: str | None = None,
    ) -> None:  # fmt: skip
        db.execute(
            "INSERT INTO attempts (item_id, token, worker, started_at, ended_at, outcome, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item_id, token, worker, started, now, outcome, error),
        )
        db.execute("DELETE FROM attempts WHERE seq <= last_insert_rowid() - ?", (HISTORY_LIMIT,))

    def _end(self, db: sqlite3.Connection, item_id: str, now: float) -> None:
        """An item is done: dependents whose last pending dependency it was become ready.
        (A dead item blocks its dependents instead: :func:`deps.mark_dead`.)"""
        db.execute(
            "UPDATE items SET pending_deps = pending_deps - 1 WHERE state = 'waiting' AND id IN "
            "(SELECT item_id FROM deps WHERE depends_on = ?)",
            (item_id,),
        )
        db.execute(
            "UPDATE items SET state = 'ready', available_at = ?, updated_at = ? "
            "WHERE state = 'waiting' AND pending_deps <= 0 AND id IN "
            "(SELECT item_id FROM deps WHERE depends_on = ?)",
            (now, now, item_id),
        )

    def _reclaim(self, db: sqlite3.Connection, now: float) -> None:
        expired = db.execute(
            "SELECT id, token, worker, leased_at, attempts, max_attempts FROM items "
            "WHERE state = 'leased' AND deadline <= ? ORDER BY deadline",
            (now,),
        ).fetchall()
        for item_id, token, worker, leased_at, attempts, max_attempts in expired:
            error = f"lease expired: worker {worker} stopped renewing it (attempt {attempts})"
            if attempts >= max_attempts:
                deps.mark_dead(db, item_id, f"{error}; gave up after {attempts} attempts", now)
            else:
                db.execute(
                    "UPDATE items SET state = 'ready', worker = NULL, deadline = NULL, "
                    "available_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
                    (now, error, now, item_id),
                )
            self._log(db, item_id, token, worker, leased_at, now, Outcome.EXPIRED, error)

    def _current(self, db: sqlite3.Connection, item_id: str, token: int) -> _Held:
        row = db.execute(
            "SELECT state, token, worker, leased_at, attempts, max_attempts, deadline "
            "FROM items WHERE id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            raise UnknownItem(f"no item {item_id!r} in {self.url}")
        if row[0] != State.LEASED or row[1] != token:
            raise LeaseLost(
                f"item {item_id}: lease token {token} is no longer current "
                f"(state {row[0]}, token {row[1]}); another worker owns it now"
            )
        return _Held(worker=row[2], leased_at=row[3], attempts=row[4], max_attempts=row[5],
                     deadline=row[6])  # fmt: skip

    # -- producers ---------------------------------------------------------------------------

    def push(self, specs: Sequence[ItemSpec], *, force: bool = False) -> list[PushOutcome]:
        now = self.clock()
        outcomes: list[PushOutcome] = []
        with self._tx() as db:
            db.execute(  # the first push after a purge starts a new generation
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', ?)",
                (uuid.uuid4().hex,),
            )
            for spec in specs:
                outcomes.append(self._push_one(db, spec, force, now))
        return outcomes

    def _push_one(
        self, db: sqlite3.Connection, spec: ItemSpec, force: bool, now: float
    ) -> PushOutcome:
        item_id = spec.item_id
        depends_on = tuple(dict.fromkeys(spec.depends_on))  # a dependency named twice counts once
        row = db.execute("SELECT state FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is not None and (not force or State(row[0]) == State.LEASED):
            return PushOutcome.EXISTS
        for dep in depends_on:
            if db.execute("SELECT 1 FROM items WHERE id = ?", (dep,)).fetchone() is None:
                raise QueueError(
                    f"item {item_id}: dependency {dep!r} is not in the queue; push it first"
                )
        if row is not None:
            deps.reset(db, item_id, canonical_json(spec.payload), depends_on, now)
            return PushOutcome.RESET
        db.execute(
            "INSERT INTO items (id, payload, state, priority, max_attempts, available_at, "
            "depends_on, created_at, updated_at) VALUES (?,?,'waiting',?,?,?,?,?,?)",
            (
                item_id,
                canonical_json(spec.payload),
                spec.priority,
                spec.max_attempts or self.retry.max_attempts,
                now,
                json.dumps(list(depends_on)),
                now,
                now,
            ),
        )
        db.executemany(
            "INSERT OR IGNORE INTO deps (depends_on, item_id) VALUES (?, ?)",
            [(dep, item_id) for dep in depends_on],
        )
        deps.resolve(db, item_id, now)
        return PushOutcome.ADDED

    # -- workers -----------------------------------------------------------------------------

    def lease(self, worker: str, ttl: float) -> Lease | None:
        now = self.clock()
        with self._tx() as db:
            return self._lease(db, worker, ttl, now)

    def _lease(self, db: sqlite3.Connection, worker: str, ttl: float, now: float) -> Lease | None:
        """Reclaim expired leases, then lease the next ready item (inside a transaction)."""
        leases = self._lease_many(db, worker, ttl, now, 1)
        return leases[0] if leases else None

    def _lease_many(
        self, db: sqlite3.Connection, worker: str, ttl: float, now: float, n: int
    ) -> list[Lease]:
        """Reclaim expired leases, then lease up to ``n`` ready items (inside a transaction)."""
        self._reclaim(db, now)
        rows = db.execute(
            "SELECT id FROM items WHERE state = 'ready' AND available_at <= ? "
            "ORDER BY priority DESC, seq LIMIT ?",
            (now, min(n, MAX_BATCH)),
        ).fetchall()
        deadline = now + ttl
        leases = []
        for (item_id,) in rows:
            db.execute(
                "UPDATE items SET state = 'leased', token = token + 1, attempts = attempts + 1, "
                "worker = ?, leased_at = ?, deadline = ?, updated_at = ? WHERE id = ?",
                (worker, now, deadline, now, item_id),
            )
            item = self._item(
                db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
            )
            leases.append(Lease(item=item, token=item.token, worker=worker, deadline=deadline))
        return leases

    def lease_many(self, worker: str, ttl: float, n: int) -> list[Lease]:
        now = self.clock()
        with self._tx() as db:
            return self._lease_many(db, worker, ttl, now, n) if n > 0 else []

    def heartbeat(self, item_id: str, token: int, ttl: float) -> float:
        now = self.clock()
        with self._tx() as db:
            if self._current(db, item_id, token).deadline <= now:
                raise LeaseLost(f"item {item_id}: lease expired before this heartbeat")
            db.execute(
                "UPDATE items SET deadline = ?, updated_at = ? WHERE id = ?",
                (now + ttl, now, item_id),
            )
        return now + ttl

    def complete(
        self,
        item_id: str,
        token: int,
        result: dict[str, Any] | None = None,
        *,
        outputs: Sequence[Publication] = (),
        lineage: LineageStep | None = None,
    ) -> None:
        now = self.clock()
        with self._tx() as db:
            self._complete(db, item_id, token, result, outputs, lineage, now)

    def complete_and_lease(
        self,
        item_id: str,
        token: int,
        result: dict[str, Any] | None = None,
        *,
        outputs: Sequence[Publication] = (),
        lineage: LineageStep | None = None,
        worker: str,
        ttl: float,
    ) -> Lease | None:
        now = self.clock()
        with self._tx() as db:  # a refused completion raises: the transaction leases nothing
            self._complete(db, item_id, token, result, outputs, lineage, now)
            return self._lease(db, worker, ttl, now)

    def complete_and_lease_many(
        self, commits: Sequence[Commit], *, worker: str, ttl: float, n: int
    ) -> list[Lease]:
        if len(commits) > MAX_BATCH:
            raise QueueError(f"{len(commits)} commits in one batch: at most {MAX_BATCH}")
        now = self.clock()
        with self._tx() as db:  # a refused commit raises: the transaction rolls back whole
            for c in commits:
                self._complete(db, c.item_id, c.token, c.result, c.outputs, c.lineage, now)
            return self._lease_many(db, worker, ttl, now, n) if n > 0 else []

    def _complete(
        self, db: sqlite3.Connection, item_id: str, token: int, result: dict[str, Any] | None,
        outputs: Sequence[Publication], lineage: LineageStep | None, now: float,
    ) -> None:  # fmt: skip
        """Mark the item done and advance the lineage (inside a transaction)."""
        held = self._current(db, item_id, token)
        if lineage is not None:
            self._advance(db, lineage, now)
        db.execute(
            "UPDATE items SET state = 'done', worker = NULL, deadline = NULL, result = ?, "
            "outputs = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            (
                canonical_json(result) if result is not None else None,
                json.dumps([p.to_json() for p in outputs]),
                now,
                item_id,
            ),
        )
        self._end(db, item_id, now)
        self._log(db, item_id, token, held.worker, held.leased_at, now, Outcome.DONE)

    def _advance(self, db: sqlite3.Connection, step: LineageStep, now: float) -> None:
        run = step.head.run
        row = db.execute("SELECT MAX(version) FROM lineage WHERE run = ?", (run,)).fetchone()
        current = int(row[0] or 0)
        if current != step.expected_version:
            raise LineageConflict(
                f"lineage {run!r}: head is version {current}, the step was computed from "
                f"version {step.expected_version}"
            )
        head = LineageHead.from_json({**step.head.to_json(), "created_at": now})
        db.execute(
            "INSERT INTO lineage (run, version, head) VALUES (?, ?, ?)",
            (run, head.version, canonical_json(head.to_json())),
        )

    def fail(self, item_id: str, token: int, error: str, *, permanent: bool = False) -> State:
        now = self.clock()
        with self._tx() as db:
            held = self._current(db, item_id, token)
            if permanent or held.attempts >= held.max_attempts:
                deps.mark_dead(db, item_id, error, now)
                self._log(db, item_id, token, held.worker, held.leased_at, now, Outcome.DEAD, error)
                return State.DEAD
            db.execute(
                "UPDATE items SET state = 'ready', worker = NULL, deadline = NULL, "
                "available_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
                (now + self.retry.backoff(held.attempts), error, now, item_id),
            )
            self._log(db, item_id, token, held.worker, held.leased_at, now, Outcome.FAILED, error)
            return State.READY

    def release(self, item_id: str, token: int) -> None:
        now = self.clock()
        with self._tx() as db:
            held = self._current(db, item_id, token)
            db.execute(
                "UPDATE items SET state = 'ready', attempts = attempts - 1, worker = NULL, "
                "deadline = NULL, available_at = ?, updated_at = ? WHERE id = ?",
                (now, now, item_id),
            )
            self._log(db, item_id, token, held.worker, held.leased_at, now, Outcome.RELEASED)

    # -- inspection and administration -------------------------------------------------------

    def get(self, item_id: str) -> Item:
        rows = self._read(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,))
        if not rows:
            raise UnknownItem(f"no item {item_id!r} in {self.url}")
        return self._item(rows[0])

    def items(self, states: Iterable[State] | None = None, limit: int | None = None) -> list[Item]:
        sql = f"SELECT {_ITEM_COLUMNS} FROM items"
        args: list[Any] = []
        if states is not None:
            wanted = [State(s).value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(wanted))})"
            args.extend(wanted)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._item(row) for row in self._read(sql, args)]

    def counts(self) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        for state, n in self._read("SELECT state, COUNT(*) FROM items GROUP BY state"):
            counts[State(state)] = n
        return counts

    def lineage_head(self, run: str) -> LineageHead:
        rows = self._read(
            "SELECT head FROM lineage WHERE run = ? ORDER BY version DESC LIMIT 1", (run,)
        )
        return LineageHead.from_json(json.loads(rows[0][0])) if rows else LineageHead(run=run)

    def lineage(self, run: str) -> list[LineageHead]:
        rows = self._read("SELECT head FROM lineage WHERE run = ? ORDER BY version", (run,))
        return [LineageHead.from_json(json.loads(r[0])) for r in rows]

    def history(self, limit: int = 1000) -> list[AttemptRecord]:
        rows = self._read(
            "SELECT item_id, token, worker, started_at, ended_at, outcome, error FROM attempts "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        return [
            AttemptRecord(item, token, worker, started, ended, Outcome(outcome), error)
            for item, token, worker, started, ended, outcome, error in reversed(rows)
        ]

    def report_worker(self, info: WorkerInfo) -> None:
        now = self.clock()
        data = canonical_json({**info.to_json(), "last_seen": now})
        with self._tx() as db:
            db.execute(
                "INSERT INTO workers (id, info, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "info = excluded.info, last_seen = excluded.last_seen",
                (info.id, data, now),
            )
            db.execute("DELETE FROM workers WHERE last_seen < ?", (now - WORKER_RETENTION,))

    def workers(self) -> list[WorkerInfo]:
        rows = self._read("SELECT info FROM workers ORDER BY last_seen DESC, id")
        return [WorkerInfo.from_json(json.loads(r[0])) for r in rows]

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        now = self.clock()
        with self._tx() as db:
            sql = "SELECT id FROM items WHERE state = 'dead'"
            args: list[Any] = []
            if ids is not None:
                wanted = list(ids)
                sql += f" AND id IN ({','.join('?' * len(wanted))})"
                args.extend(wanted)
            dead = [row[0] for row in db.execute(sql + " ORDER BY seq", args).fetchall()]
            for item_id in dead:  # push order: a dependency is requeued before its dependents
                deps.requeue(db, item_id, now)
            return len(dead)

    def purge(self) -> None:
        with self._tx() as db:
            for table in ("items", "deps", "lineage", "attempts", "workers"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key = 'generation'")

    def ping(self) -> None:
        self._read("SELECT 1")

    # -- identity and lineage recovery -------------------------------------------------------

    def generation(self) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = 'generation'")
        return str(rows[0][0]) if rows else None

    def reset_lineage(self, run: str, to_version: int, rearm: Sequence[str]) -> None:
        now = self.clock()
        with self._tx() as db:
            reset_lineage(db, self.url, run, to_version, list(dict.fromkeys(rearm)), now)

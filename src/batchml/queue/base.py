"""The backend-neutral work-queue contract (docs/design.md, "Queue contract").

An item has a stable id, a JSON payload, an attempt count, optional dependencies and a state:

``waiting``  some dependency is not done yet
``ready``    every dependency is done: leasable (possibly not before ``available_at``, after
             a failed attempt)
``leased``   held by one worker under a fencing token until its deadline
``done``     committed; its result and published outputs are recorded
``dead``     failed ``max_attempts`` times (or lost its lease that often); last error kept
``blocked``  a dependency is dead (or itself blocked): never leased until ``requeue_dead``
             revives the dead one; ``last_error`` says ``blocked: dependency X is dead: ...``

Dependencies are strict: an item becomes ready only when all of them are *done*. When an item
dies, everything downstream of it that has not run becomes blocked in the same atomic step;
``requeue_dead`` puts the dead item back and its blocked dependents back to waiting, so a chain
resumes in its order. ``drained()`` counts neither dead nor blocked items as pending work.

Every backend is one subpackage beside this module (``sqlite/``, ``redis/``) and passes
``tests/support/queue_contract.py`` unchanged.
Time comes from an injectable clock so lease expiry is tested without sleeping.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchml.storage import Publication

Clock = Callable[[], float]


class State(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    BLOCKED = "blocked"


class Outcome(StrEnum):
    """How one attempt ended: the one vocabulary of the queue's attempt history, the worker,
    the metrics' ``outcome`` label, the report's and the dashboard's charts."""

    DONE = "done"  # committed
    FAILED = "failed"  # failed; retried after a backoff
    DEAD = "dead"  # failed for the last time, or permanently
    RELEASED = "released"  # given back on a graceful shutdown (not counted as an attempt)
    EXPIRED = "expired"  # the lease was lost: it ran out, or the item was taken over or purged


ENDED = (State.DONE, State.DEAD)
#: the states that need no worker until someone acts (dead, and the items blocked behind them)
STUCK = (State.DEAD, State.BLOCKED)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_id(payload: dict[str, Any]) -> str:
    """Default item id: a digest of the canonical payload, so the same push twice is a no-op."""
    return "i-" + hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RetryPolicy:
    """How often an item is tried and how long a failed one waits before its next attempt."""

    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap: float = 300.0

    def backoff(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt (deterministic, capped)."""
        delay = self.backoff_base * self.backoff_factor ** max(attempts - 1, 0)
        return float(min(delay, self.backoff_cap))


@dataclass(frozen=True)
class ItemSpec:
    """What a producer pushes."""

    payload: dict[str, Any]
    id: str | None = None
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    max_attempts: int | None = None

    @property
    def item_id(self) -> str:
        return self.id if self.id is not None else payload_id(self.payload)


class PushOutcome(StrEnum):
    ADDED = "added"
    EXISTS = "exists"  # already queued or ended: a no-op
    RESET = "reset"  # ended, and --force put it back


@dataclass(frozen=True)
class Item:
    id: str
    payload: dict[str, Any]
    state: State
    attempts: int
    max_attempts: int
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    token: int = 0
    worker: str | None = None
    deadline: float | None = None
    available_at: float = 0.0
    last_error: str | None = None
    result: dict[str, Any] | None = None
    outputs: tuple[Publication, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Lease:
    item: Item
    token: int
    worker: str
    deadline: float


@dataclass(frozen=True)
class LineageHead:
    """One version of a run's model lineage. Version 0 is the untrained start (no checkpoint)."""

    run: str
    version: int = 0
    checkpoint: Publication | None = None
    dataset: str | None = None
    item_id: str | None = None
    params_digest: str | None = None
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "version": self.version,
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
            "dataset": self.dataset,
            "item_id": self.item_id,
            "params_digest": self.params_digest,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LineageHead:
        ckpt = data.get("checkpoint")
        return cls(
            run=str(data["run"]),
            version=int(data["version"]),
            checkpoint=Publication.from_json(ckpt) if ckpt else None,
            dataset=data.get("dataset"),
            item_id=data.get("item_id"),
            params_digest=data.get("params_digest"),
            created_at=float(data.get("created_at") or 0.0),
        )


@dataclass(frozen=True)
class LineageStep:
    """Compare-and-set of a lineage head, applied atomically with an item's completion."""

    expected_version: int
    head: LineageHead

    def __post_init__(self) -> None:
        if self.head.version != self.expected_version + 1:
            raise ValueError("a lineage step advances the head by exactly one version")


@dataclass(frozen=True)
class Commit:
    """One item's commit in a batch (:meth:`WorkQueue.complete_and_lease_many`): what
    :meth:`WorkQueue.complete` takes for one item."""

    item_id: str
    token: int
    result: dict[str, Any] | None = None
    outputs: tuple[Publication, ...] = ()
    lineage: LineageStep | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One ended attempt (or lease), for the status view and the run timeline."""

    item_id: str
    token: int
    worker: str
    started_at: float
    ended_at: float
    outcome: Outcome
    error: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker reports about itself, for ``queue status`` and the dashboard."""

    id: str
    host: str
    pid: int
    started_at: float
    state: str = "idle"  # idle | working | stopping | exited
    item_id: str | None = None
    item_since: float | None = None
    processed: int = 0
    last_seen: float = 0.0  # set by the queue when the report arrives

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "state": self.state,
            "item_id": self.item_id,
            "item_since": self.item_since,
            "processed": self.processed,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(
            id=str(data["id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            started_at=float(data["started_at"]),
            state=str(data.get("state", "idle")),
            item_id=data.get("item_id"),
            item_since=data.get("item_since"),
            processed=int(data.get("processed", 0)),
            last_seen=float(data.get("last_seen", 0.0)),
        )


#: the most items one ``lease_many`` / ``complete_and_lease_many`` leases (a larger n is cut)
MAX_BATCH = 1000

#: worker reports older than this are dropped when a new report arrives
WORKER_RETENTION = 24 * 3600.0


@dataclass
class QueueOptions:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = time.time


class WorkQueue(ABC):
    """A durable work queue shared by all workers of a deployment."""

    url: str

    def __init__(self, options: QueueOptions | None = None) -> None:
        self.options = options or QueueOptions()

    @property
    def clock(self) -> Clock:
        return self.options.clock

    @property
    def retry(self) -> RetryPolicy:
        return self.options.retry

    # -- producers ---------------------------------------------------------------------------

    @abstractmethod
    def push(self, specs: Sequence[ItemSpec], *, force: bool = False) -> list[PushOutcome]:
        """Add items atomically, in order (FIFO). A dependency must already exist or appear
        earlier in ``specs``; an item is ready at once only if every dependency is done
        (blocked if one is dead or blocked, waiting otherwise).

        An existing id is a no-op (EXISTS) unless ``force``: then an item that is not leased is
        RESET - the spec's payload and dependencies, fresh attempts, no result - and its state
        and its dependents' are computed again (a dependent that was ready waits for it
        again; done and leased dependents keep their state). A leased item is left alone
        (EXISTS). A forced push that would close a dependency cycle is refused (QueueError)."""

    # -- workers -----------------------------------------------------------------------------

    @abstractmethod
    def lease(self, worker: str, ttl: float) -> Lease | None:
        """Return expired leases to ready (or dead), then lease the next ready item, if any."""

    @abstractmethod
    def heartbeat(self, item_id: str, token: int, ttl: float) -> float:
        """Extend the lease to now + ttl and return the new deadline; LeaseLost if stale."""

    @abstractmethod
    def complete(
        self,
        item_id: str,
        token: int,
        result: dict[str, Any] | None = None,
        *,
        outputs: Sequence[Publication] = (),
        lineage: LineageStep | None = None,
    ) -> None:
        """Mark done (and advance the lineage head) in one atomic step, with the current token.

        Raises LeaseLost if the token is stale, LineageConflict if the head moved; in both
        cases nothing changed."""

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
        """A worker's steady state in one step: :meth:`complete`, then :meth:`lease`.

        The completion is exactly ``complete``'s (same errors, same atomicity with the lineage
        step); only if it succeeded is the next ready item leased for ``worker``, exactly as
        ``lease`` does (expired leases reclaimed first), so dependents this completion released
        can be the next lease. A refused completion raises and leases nothing. This default
        makes two calls; a backend overrides it to make both one transaction (one round trip).
        """
        self.complete(item_id, token, result, outputs=outputs, lineage=lineage)
        return self.lease(worker, ttl)

    @abstractmethod
    def lease_many(self, worker: str, ttl: float, n: int) -> list[Lease]:
        """Up to ``n`` leases for ``worker`` in one step (one transaction, one round trip):
        the items ``n`` calls of :meth:`lease` would hand out, in that order, each under its
        own fencing token and with the same deadline. An empty list when nothing is ready.
        At most MAX_BATCH items."""

    @abstractmethod
    def complete_and_lease_many(
        self, commits: Sequence[Commit], *, worker: str, ttl: float, n: int
    ) -> list[Lease]:
        """A batch in one step: commit every item of ``commits`` (each exactly as
        :meth:`complete` does, lineage steps included, in the order given), then lease up to
        ``n`` items as :meth:`lease_many` does (``n`` = 0: none).

        All or nothing: if one commit is refused (LeaseLost, LineageConflict, UnknownItem,
        the error naming its item) nothing is committed and nothing leased. An item named
        twice is refused the second time (LeaseLost), as a second ``complete`` would be.
        At most MAX_BATCH commits (QueueError otherwise)."""

    @abstractmethod
    def fail(self, item_id: str, token: int, error: str, *, permanent: bool = False) -> State:
        """Record a failed attempt: back to ready after a backoff, or dead after the last one
        (its dependents, transitively, then become blocked).

        ``permanent`` (retrying cannot help: an unknown task, a payload that fails validation)
        makes the item dead at once, whatever attempts it has left."""

    @abstractmethod
    def release(self, item_id: str, token: int) -> None:
        """Give the item back at once (graceful shutdown); the attempt is not counted."""

    # -- inspection and administration -------------------------------------------------------

    @abstractmethod
    def get(self, item_id: str) -> Item:
        """The item, or UnknownItem."""

    @abstractmethod
    def items(self, states: Iterable[State] | None = None, limit: int | None = None) -> list[Item]:
        """Items in push order, optionally only those in ``states``."""

    @abstractmethod
    def counts(self) -> dict[State, int]:
        """Number of items per state (every state present, zero included)."""

    def drained(self) -> bool:
        """True when nothing is waiting, ready or leased."""
        counts = self.counts()
        return counts[State.WAITING] + counts[State.READY] + counts[State.LEASED] == 0

    @abstractmethod
    def lineage_head(self, run: str) -> LineageHead:
        """The run's current head (version 0 when nothing was trained yet)."""

    @abstractmethod
    def lineage(self, run: str) -> list[LineageHead]:
        """Every version of the run's lineage, oldest first (version 0 excluded)."""

    @abstractmethod
    def history(self, limit: int = 1000) -> list[AttemptRecord]:
        """The most recent ended attempts, oldest first."""

    @abstractmethod
    def report_worker(self, info: WorkerInfo) -> None:
        """Record a worker's self-report, stamped with the queue's clock (``last_seen``).

        Reports older than WORKER_RETENTION are pruned on the way."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every worker report kept, most recently seen first."""

    @abstractmethod
    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead items (all, or those ids) back with a fresh attempt count, and the items
        they blocked back to waiting (or ready); returns how many dead items were requeued."""

    @abstractmethod
    def purge(self) -> None:
        """Delete every item, lineage and history of this queue, and its generation."""

    # -- identity and lineage recovery -------------------------------------------------------

    @abstractmethod
    def generation(self) -> str | None:
        """The queue's generation: a random id set when the queue was created (SQLite: with
        its file; Redis: by the first push) and deleted by :meth:`purge`; a new one starts at
        the next push. None when the queue does not exist (a Redis that lost its data reads
        so). A worker that sees it change or vanish knows the queue lost its data."""

    @abstractmethod
    def reset_lineage(self, run: str, to_version: int, rearm: Sequence[str]) -> None:
        """Move the run's head back to ``to_version`` and re-arm the ``rearm`` items, in one
        atomic step.

        Versions above ``to_version`` leave the lineage. Each re-armed item (in the order
        given, which must follow its dependencies) gets a fresh attempt count, loses its last
        error and committed result, and becomes ``waiting`` while a dependency has not ended,
        else ``ready``; a waiting item outside ``rearm`` that depends on one gains it as a
        pending dependency. Refused (QueueError, nothing changed) when ``to_version`` is not
        a version of the lineage (0 always is), a ``rearm`` id is unknown, or an item of the
        run (payload ``run``) or of ``rearm`` is leased: a train step running against the old
        head would commit against the moved one (its compare-and-set would fail it, and its
        retry would train the wrong day), or a ready item outside ``rearm`` depends on one.
        """

    @abstractmethod
    def ping(self) -> None:
        """Raise QueueUnavailable unless the backend answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> WorkQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

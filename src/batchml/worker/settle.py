"""Settling an attempt with the queue: commit, fail or release it, whatever the network does.

Each call is retried while the queue is unreachable
(:class:`~batchml.worker.retry.UnavailableRetry`), and each returns the attempt's
:class:`~batchml.queue.base.Outcome`. Outputs follow the exactly-once rule: published only
after a commit that landed, discarded when it surely did not, and kept staged when that cannot
be known (the queue stayed unreachable), so that whoever finds the item done rolls its
publication forward.

A commit may also lease the worker's next item in the same step
(:meth:`~batchml.queue.base.WorkQueue.complete_and_lease`); the outputs are still published as
soon as the commit is known to have landed, before the next item runs.

A commit is ambiguous when its reply is lost: the script may have run. If it also leased, the
retry carries the same request id and the queue hands back the lease the first try made, commit
included. Otherwise the retry is refused as stale (the item is no longer leased under our
token); the item is read back, and if it is done under our token, the first try landed and the
outputs are published; a lease the first try may have made, unclaimed, expires on its own.

An item the queue no longer knows (UnknownItem) vanished with the queue's data: ``on_vanished``
raises DataLoss (the worker sets it to check the generation, :mod:`batchml.worker.dataloss`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from batchml.errors import (
    BatchmlError,
    DataLoss,
    LeaseLost,
    QueueUnavailable,
    UnknownItem,
    is_permanent,
)
from batchml.queue.base import Commit, Lease, Outcome, State, WorkQueue
from batchml.storage import Publication, Storage
from batchml.tasks import TaskContext
from batchml.worker.retry import UnavailableRetry

log = logging.getLogger("batchml.worker")
T = TypeVar("T")


def _vanished(item_id: str) -> NoReturn:
    raise DataLoss(
        f"the queue lost its data: item {item_id} vanished while it ran (purged, or a Redis "
        "restarted without appendonly yes?)"
    )


@dataclass
class Finished:
    """An attempt that ran to success and whose commit waits for its batch (``--prefetch``)."""

    ctx: TaskContext
    result: dict[str, Any]
    outputs: list[Publication]
    started: float
    seconds: float


class Settle:
    """Ends attempts in the queue for one worker; ``describe`` turns an error into one line."""

    def __init__(
        self,
        queue: WorkQueue,
        storage: Storage,
        backoff: UnavailableRetry,
        describe: Callable[[BaseException], str],
    ) -> None:
        self.queue = queue
        self.storage = storage
        self.backoff = backoff
        self.describe = describe
        self.on_vanished: Callable[[str], NoReturn] = _vanished  # an item is no longer known

    def retry(self, what: str, op: Callable[[], T], *, budget: float | None = None) -> T:
        """``op()``, retried with backoff while the queue is unreachable."""
        return self.backoff.call(op, what, log, budget=budget)

    def discard(self, ctx: TaskContext) -> None:
        """Remove what the attempt staged: it never becomes visible."""
        self.storage.discard_attempt(ctx.item.id, ctx.token)

    def commit(
        self,
        ctx: TaskContext,
        result: dict[str, Any],
        outputs: list[Publication],
        started: float,
        lease_next: tuple[str, float] | None = None,
    ) -> tuple[Outcome, Lease | None]:
        """Complete the item with this attempt's token, then publish its outputs.

        With ``lease_next`` (worker id, lease TTL) the same call leases the worker's next item.
        Returns the attempt's status and that lease, if one was made."""
        item = ctx.item
        try:
            nxt = self._complete(ctx, result, outputs, lease_next)
        except LeaseLost as exc:
            self.discard(ctx)
            log.warning("abandoned %s: %s", item.id, exc)
            return Outcome.EXPIRED, None
        except UnknownItem:
            self.discard(ctx)
            self.on_vanished(item.id)
        except QueueUnavailable:
            # the commit may have landed: keep the staged outputs for whoever rolls it forward
            log.error("could not commit %s: the queue stayed unreachable", item.id)
            raise
        except Exception as exc:  # the lineage moved, or the queue refused the result
            self.discard(ctx)
            return self.fail(ctx, exc), None
        self.storage.publish_all(outputs)
        log.info("committed %s in %.2fs", item.id, time.time() - started)
        return Outcome.DONE, nxt

    def _complete(
        self,
        ctx: TaskContext,
        result: dict[str, Any],
        outputs: list[Publication],
        lease_next: tuple[str, float] | None,
    ) -> Lease | None:
        unsure = False

        def once() -> Lease | None:
            nonlocal unsure
            item_id, token, lineage = ctx.item.id, ctx.token, ctx.lineage_step
            try:
                if lease_next is None:
                    self.queue.complete(item_id, token, result, outputs=outputs, lineage=lineage)
                    return None
                worker, ttl = lease_next
                return self.queue.complete_and_lease(
                    item_id, token, result, outputs=outputs, lineage=lineage, worker=worker,
                    ttl=ttl,
                )  # fmt: skip
            except QueueUnavailable:
                unsure = True  # it may have run; only its reply is known to be lost
                raise

        try:
            return self.retry(f"commit {ctx.item.id}", once)
        except LeaseLost:
            if not unsure:
                raise
            item = self.retry(f"read {ctx.item.id}", lambda: self.queue.get(ctx.item.id))
            if item.state != State.DONE or item.token != ctx.token:
                raise
            log.info("%s: the commit whose reply was lost did land", ctx.item.id)
            return None

    def commit_batch(
        self, batch: list[Finished], worker: str, ttl: float, n: int
    ) -> tuple[list[Outcome], list[Lease] | None]:
        """Commit every attempt of ``batch`` and lease up to ``n`` items for ``worker``, in one
        call (all commits or none), then publish the outputs of each. If the batch is refused
        (a lease was lost, a result refused; or it is the retry of a batch whose reply was lost)
        each attempt is settled on its own, and nothing is leased. Returns the outcome of each
        attempt and the leases (None when the batch was settled one by one)."""
        commits = [
            Commit(f.ctx.item.id, f.ctx.token, f.result, outputs=tuple(f.outputs)) for f in batch
        ]
        try:
            leases = self.retry(
                f"commit {len(batch)} items",
                lambda: self.queue.complete_and_lease_many(commits, worker=worker, ttl=ttl, n=n),
            )
        except QueueUnavailable:
            log.error("could not commit %d items: the queue stayed unreachable", len(batch))
            raise
        except DataLoss:
            raise
        except BatchmlError as exc:
            log.info("batch of %d commits refused (%s): settling each", len(batch), exc)
            return [self._settle_one(f) for f in batch], None
        for f in batch:
            self.storage.publish_all(f.outputs)
            log.info("committed %s in %.2fs", f.ctx.item.id, f.seconds)
        return [Outcome.DONE] * len(batch), leases

    def _settle_one(self, f: Finished) -> Outcome:
        """One attempt of a refused batch: published if its commit landed after all (a lost
        reply's first try), else committed on its own."""
        item_id = f.ctx.item.id
        try:
            item = self.retry(f"read {item_id}", lambda: self.queue.get(item_id))
        except UnknownItem:
            self.discard(f.ctx)
            self.on_vanished(item_id)
        if item.state == State.DONE and item.token == f.ctx.token:
            self.storage.publish_all(f.outputs)
            log.info("%s: the commit whose reply was lost did land", item_id)
            return Outcome.DONE
        return self.commit(f.ctx, f.result, f.outputs, f.started)[0]

    def release(self, item_id: str, token: int, budget: float) -> Outcome:
        """Give the item back at once (not an attempt); if the queue cannot be reached in
        ``budget`` seconds the lease is left to expire instead."""
        try:
            self.retry(
                f"release {item_id}", lambda: self.queue.release(item_id, token), budget=budget
            )
        except UnknownItem:
            self.on_vanished(item_id)
        except LeaseLost as exc:
            log.warning("could not release %s: %s", item_id, exc)
            return Outcome.EXPIRED
        except QueueUnavailable:
            log.warning("could not release %s; its lease will expire instead", item_id)
            return Outcome.EXPIRED
        log.info("released %s for another worker", item_id)
        return Outcome.RELEASED

    def fail(self, ctx: TaskContext, exc: BaseException) -> Outcome:
        """Record the failed attempt: retried after a backoff, or dead after the last one;
        dead at once if the error is permanent (:class:`batchml.errors.PermanentError`)."""
        error = self.describe(exc)
        permanent = is_permanent(exc)
        try:
            state = self.retry(
                f"fail {ctx.item.id}",
                lambda: self.queue.fail(ctx.item.id, ctx.token, error, permanent=permanent),
            )
        except UnknownItem:
            self.on_vanished(ctx.item.id)
        except LeaseLost:
            log.warning("failed %s after losing its lease: %s", ctx.item.id, error)
            return Outcome.EXPIRED
        if state == State.DEAD and permanent:
            log.error("item %s is dead at once: permanent error: %s", ctx.item.id, error)
            return Outcome.DEAD
        if state == State.DEAD:
            log.error(
                "item %s is dead after %d attempts: %s", ctx.item.id, ctx.item.attempts, error
            )
            return Outcome.DEAD
        log.warning(
            "attempt %d of %s failed, will retry: %s", ctx.item.attempts, ctx.item.id, error
        )
        return Outcome.FAILED

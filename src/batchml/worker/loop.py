"""The worker: lease → heartbeat → run the task → commit | fail, until the queue is drained.

In steady state an item's commit also leases the next one (``complete_and_lease``: one Redis
round trip per item), and the worker's status report is sent when its state changes, else at
most once per heartbeat interval.

Exactly-once effects: a task writes outputs to attempt-private staging paths; the worker commits
the item (and, for training, the lineage step) with the lease's fencing token, and only then
publishes the outputs under their final names. A refused commit (stale token) publishes nothing.

Signals: SIGTERM or SIGINT stops leasing. A running task gets ``grace`` seconds to finish and
commit; past that it is interrupted and its item released at once (not counted as an attempt),
so another worker takes it immediately. The process then exits 143 (130 after SIGINT).

An unreachable queue (Redis restarting, a failover, a network blip) is retried with capped
exponential backoff and jitter (:mod:`batchml.worker.retry`) for up to ``queue_retry`` seconds, then
the worker exits 69. A queue that lost its data (its generation changed or vanished, or an item
in hand vanished: :mod:`batchml.worker.dataloss`) makes the worker exit 65, never 0. Meanwhile the
heartbeat thread keeps the lease if it can renew it in time; otherwise the attempt is abandoned.
How an attempt is committed, failed or released, including a commit whose reply was lost, is
:mod:`batchml.worker.settle`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, TypeVar

from batchml import exitcodes
from batchml.errors import BatchmlError, DataLoss, LeaseLost, QueueNotFound, QueueUnavailable
from batchml.queue.base import Lease, Outcome, State, WorkerInfo, WorkQueue, canonical_json
from batchml.settings import Settings
from batchml.storage import Publication, Storage, safe_name
from batchml.tasks import TaskContext, TaskRegistry
from batchml.tasks.context import Shutdown
from batchml.worker.dataloss import GenerationWatch
from batchml.worker.heartbeat import Heartbeat
from batchml.worker.held import HeldLeases
from batchml.worker.observer import WorkerObserver
from batchml.worker.publish import roll_forward
from batchml.worker.retry import UnavailableRetry
from batchml.worker.settle import Finished, Settle
from batchml.worker.storage_probe import StorageProbe

log = logging.getLogger("batchml.worker")
T = TypeVar("T")

#: seconds spent trying to give an item back on shutdown before leaving it to expire
RELEASE_BUDGET = 5.0


class _Fanout(WorkerObserver):
    """Calls every observer; an observer's error is logged, never allowed to stop the work."""

    def __init__(self, observers: Sequence[WorkerObserver]) -> None:
        self._observers = list(observers)
        for name in (
            "on_start", "on_lease", "on_outcome", "on_heartbeat", "on_lease_lost", "on_idle",
            "on_exit",
        ):  # fmt: skip
            setattr(self, name, self._fan(name))

    def _fan(self, name: str) -> Any:
        def call(*args: Any) -> None:
            for observer in self._observers:
                try:
                    getattr(observer, name)(*args)
                except Exception:
                    log.exception("observer %s.%s failed", type(observer).__name__, name)

        return call


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def describe_error(exc: BaseException) -> str:
    """One line for the queue's last_error: the message, and where an unexpected error arose."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, BatchmlError):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return text[:2000]


@dataclass
class Ended:
    """One attempt this worker ran, and how it ended."""

    item_id: str
    status: Outcome
    seconds: float


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        storage: Storage,
        settings: Settings,
        worker_id: str | None = None,
        observers: Sequence[WorkerObserver] = (),
    ) -> None:
        self.queue = queue
        self.storage = storage
        self.settings = settings
        self.config = settings.worker
        self.tasks = TaskRegistry.load(settings.tasks)  # the allow-list: a ConfigError if bad
        self.id = worker_id or new_worker_id()
        self.outcomes: list[Ended] = []
        self.runs_seen: set[str] = set()
        self.observer = _Fanout(observers)
        self._stopping = threading.Event()
        self._stop_signal: int | None = None  # the first signal: SIGINT exits 130, SIGTERM 143
        self._in_task = False
        self._grace_over = threading.Event()
        self._grace_timer: threading.Timer | None = None
        self._info = WorkerInfo(
            id=self.id, host=socket.gethostname(), pid=os.getpid(), started_at=time.time()
        )
        self._last_report = 0.0
        self._wanted: tuple[str, str | None, float | None] = ("idle", None, None)
        self._backoff = UnavailableRetry(budget=self.config.queue_retry)
        self._settle = Settle(queue, storage, self._backoff, describe_error)
        self._watch = GenerationWatch(queue, storage, self._retry)
        self._probe = StorageProbe(storage.root, timeout=self.config.heartbeat_interval)
        self._settle.on_vanished = self._watch.vanished

    # -- signals -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop leasing (as SIGTERM does, without interrupting the task)."""
        self._stopping.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set() and self._in_task:
            reason = "grace period over" if self._grace_over.is_set() else f"{name} again"
            log.warning("%s: releasing the current item now", reason)
            raise Shutdown(reason)
        self._stop_signal = self._stop_signal or signum
        self._stopping.set()
        if not self._in_task:
            log.info("%s: no item in hand; stopping", name)
            return
        if self.config.grace <= 0:
            log.info("%s: releasing the current item now", name)
            raise Shutdown(name)
        log.info(
            "%s: finishing the current item within %.0fs, then stopping", name, self.config.grace
        )
        self._start_grace_timer()

    def _start_grace_timer(self) -> None:
        """After ``grace`` seconds, interrupt a task still running (as a second SIGTERM would).

        A timer thread, not SIGALRM: the alarm belongs to whoever embeds the worker."""
        main = threading.main_thread().ident
        assert main is not None

        def expire() -> None:
            if self._in_task:
                self._grace_over.set()
                signal.pthread_kill(main, signal.SIGTERM)

        self._grace_timer = threading.Timer(self.config.grace, expire)
        self._grace_timer.daemon = True
        self._grace_timer.start()

    def _cancel_grace_timer(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    @contextlib.contextmanager
    def _signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            self._cancel_grace_timer()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Work until the queue is drained (or told to stop); return the process exit code."""
        log.info("Worker with sessionID: %s", self.id)
        self.observer.on_start(self.id)
        self._report("idle")
        code = exitcodes.TERMINATED
        try:
            log.info("Initial queue state: empty=%s", self._watch.start())
            with self._signals():
                code = self._loop()
            if code == exitcodes.TERMINATED and self._stop_signal == signal.SIGINT:
                code = exitcodes.INTERRUPTED
        except DataLoss as exc:
            log.error("%s", exc)
            code = exitcodes.DATA_LOSS
        except QueueNotFound:
            code = exitcodes.CONFIG
            raise
        finally:
            self.observer.on_exit(code)
            with contextlib.suppress(BatchmlError):
                self._report("exited")
        return code

    def _report(self, state: str, item_id: str | None = None, *, throttle: float = 0.0) -> None:
        """Tell the queue what this worker does: at once when the state changes, else at most
        every ``throttle`` seconds (a report held back is sent after the item's first heartbeat,
        so ``queue status`` names the item of a long task; short ones cost no round trip each)."""
        self._wanted = (state, item_id, time.time() if item_id else None)
        recent = time.monotonic() - self._last_report < throttle
        if state == self._info.state and recent:
            return
        self._send_report()

    def _report_if_behind(self) -> None:
        """After a heartbeat: send the report a throttle held back, if any."""
        state, item_id, _ = self._wanted
        if (state, item_id) != (self._info.state, self._info.item_id):
            self._send_report()

    def _send_report(self) -> None:
        state, item_id, since = self._wanted
        self._last_report = time.monotonic()
        self._info = replace(
            self._info, state=state, item_id=item_id, item_since=since,
            processed=sum(o.status == Outcome.DONE for o in self.outcomes),  # not released ones
        )  # fmt: skip
        try:
            self.queue.report_worker(self._info)
        except QueueUnavailable as exc:  # a report is informative: never worth waiting for
            log.debug("worker report not sent: %s", exc)

    def _retry(
        self, what: str, op: Callable[[], T], *, budget: float | None = None,
        interrupt: threading.Event | None = None,
    ) -> T:  # fmt: skip
        """``op()``, retried with backoff while the queue is unreachable."""
        return self._backoff.call(op, what, log, interrupt=interrupt, budget=budget)

    def _lease(self) -> Lease | None:
        """The next lease; None also when told to stop while the queue was unreachable."""
        try:
            return self._retry(
                "lease",
                lambda: self.queue.lease(self.id, self.config.lease_ttl),
                interrupt=self._stopping,
            )
        except QueueUnavailable:
            if self._stopping.is_set():
                return None
            raise

    def _loop(self) -> int:
        if self.config.prefetch > 1:
            return self._loop_batched()
        waiting = False
        done = 0
        limit = self.config.max_items
        nxt: Lease | None = None  # leased by the last commit: the item to run next
        while not self._stopping.is_set():
            if limit is not None and done >= limit:
                log.info("processed %d items; stopping as asked", done)
                return exitcodes.OK
            lease, nxt = nxt or self._lease(), None
            if lease is not None and self._stopping.is_set():
                # the signal came while leasing: too late to start, give the item back at once
                self._settle.release(lease.item.id, lease.token, RELEASE_BUDGET)
                break
            if lease is None:
                if self._stopping.is_set():
                    break
                code = self._nothing_ready(waiting)
                if code is not None:
                    return code
                waiting = True
                continue
            waiting = False
            self.observer.on_lease(lease)
            self._report("working", lease.item.id, throttle=self.config.heartbeat_interval)
            done += 1
            nxt = self._process(lease, lease_next=limit is None or done < limit)
        if nxt is not None:  # leased by the commit that came with the stop: give it back
            self._settle.release(nxt.item.id, nxt.token, RELEASE_BUDGET)
        log.info("stopped before the queue was drained")
        return exitcodes.TERMINATED

    def _loop_batched(self) -> int:
        """``--prefetch N``: lease N items in one call, run them in turn, then commit the
        finished ones and lease the next N in one call. Held leases are renewed meanwhile
        (:class:`~batchml.worker.held.HeldLeases`); on a stop the finished items are committed
        and those not started are released at once."""
        n, limit = self.config.prefetch, self.config.max_items
        keeper = HeldLeases(self.queue, self.config.lease_ttl, self.config.heartbeat_interval, log)
        keeper.start()
        held: deque[Lease] = deque()
        finished: list[Finished] = []
        started, waiting = 0, False
        try:
            while not self._stopping.is_set():
                if not held:
                    want = n if limit is None else min(n, limit - started)
                    held.extend(self._refill(finished, keeper, want))
                    if not held and want <= 0:
                        log.info("processed %d items; stopping as asked", started)
                        return exitcodes.OK
                    if not held:
                        if self._stopping.is_set():
                            break
                        code = self._nothing_ready(waiting)
                        if code is not None:
                            return code
                        waiting = True
                        continue
                lease = held.popleft()
                if self._stopping.is_set():
                    held.appendleft(lease)
                    break
                if not keeper.drop(lease):
                    continue  # its lease was lost while it waited its turn
                waiting = False
                self.observer.on_lease(lease)
                self._report("working", lease.item.id, throttle=self.config.heartbeat_interval)
                started += 1
                before = len(finished)
                self._process(lease, lease_next=False, defer=finished)
                if len(finished) > before:
                    keeper.hold(lease)  # renewed until its commit
            log.info("stopped before the queue was drained")
            return exitcodes.TERMINATED
        finally:
            self._wind_down(finished, held, keeper)

    def _refill(self, finished: list[Finished], keeper: HeldLeases, want: int) -> list[Lease]:
        """Commit the finished attempts and lease up to ``want`` items, in one call when the
        batch commits whole; the leases are renewed by ``keeper`` until each runs."""
        ttl = self.config.lease_ttl
        leases: list[Lease] | None = None
        if finished:
            batch = finished[:]
            finished.clear()
            for f in batch:
                keeper.forget(f.ctx.item.id)
            outcomes, leases = self._settle.commit_batch(batch, self.id, ttl, max(want, 0))
            for f, status in zip(batch, outcomes, strict=True):
                self.outcomes.append(Ended(f.ctx.item.id, status, f.seconds))
                self.observer.on_outcome(f.ctx.item.id, status, f.seconds)
        if leases is None and want > 0:
            try:
                leases = self._retry(
                    "lease",
                    lambda: self.queue.lease_many(self.id, ttl, want),
                    interrupt=self._stopping,
                )
            except QueueUnavailable:
                if not self._stopping.is_set():
                    raise
        for lease in leases or ():
            keeper.hold(lease)
        return leases or []

    def _wind_down(self, finished: list[Finished], held: deque[Lease], keeper: HeldLeases) -> None:
        """Leaving the batched loop: commit what finished, give back what never started."""
        try:
            if finished:
                self._refill(finished, keeper, 0)
        finally:
            keeper.stop()
            for lease in held:
                self._settle.release(lease.item.id, lease.token, RELEASE_BUDGET)

    def _nothing_ready(self, waiting: bool) -> int | None:
        """No lease came: the exit code if the queue is drained, else None after a poll wait."""
        if self._retry("drained", self.queue.drained):
            self._watch.check()  # an empty queue may be one that lost its data
            log.info("Queue empty, exiting")
            return self._finish()
        self._idle(waiting)
        return None

    def _idle(self, waiting: bool) -> None:
        """Nothing is ready but the queue is not drained: wait a poll interval."""
        if not waiting:
            log.info("Waiting for work")
        self.observer.on_idle()
        self._report("idle", throttle=self.config.heartbeat_interval)
        self._stopping.wait(self.config.poll_interval)

    def _finish(self) -> int:
        """The queue is drained: roll forward any publication a killed worker left undone.
        Exit 1 (DEAD_ITEMS) when an item is dead or blocked behind one."""
        self._retry("roll publications forward", lambda: roll_forward(self.storage, self.queue))
        counts = self._retry("counts", self.queue.counts)
        dead, blocked = counts[State.DEAD], counts[State.BLOCKED]
        if dead:
            log.error("%d item(s) are dead; see `batchml queue status`", dead)
        if blocked:
            roots = self._retry("dead items", lambda: self.queue.items([State.DEAD], limit=5))
            log.error(
                "%d item(s) are blocked behind dead item(s) %s; fix the cause, then "
                "`batchml queue requeue-dead`",
                blocked,
                ", ".join(i.id for i in roots) + (" …" if dead > len(roots) else ""),
            )
        return exitcodes.DEAD_ITEMS if dead or blocked else exitcodes.OK

    # -- one item ----------------------------------------------------------------------------

    def _process(
        self, lease: Lease, *, lease_next: bool, defer: list[Finished] | None = None
    ) -> Lease | None:
        """Run one leased item to its outcome. With ``lease_next`` (and no stop asked), its
        commit also leases the worker's next item, which is returned. With ``defer``, a success
        without a lineage step is appended to it instead of committed (its batch commits it)."""
        item = lease.item
        payload = item.payload
        run = str(payload.get("run", self.settings.run))
        self.runs_seen.add(run)
        task, dataset = payload.get("task"), payload.get("dataset")
        if dataset is not None:  # the tutorial's line, then what runs it
            log.info("Processing dataset: %s (%s, item %s)", dataset, task, item.id)
        else:
            log.info("Processing item: %s (%s)", item.id, task)
        ctx = TaskContext(
            item=item,
            token=lease.token,
            run=run,
            worker_id=self.id,
            storage=self.storage,
            queue=self.queue,
            log=log,
        )
        beat = Heartbeat(
            self.queue, item.id, lease.token, self.config.lease_ttl,
            self.config.heartbeat_interval, ctx.lost, log, self.observer,
            on_beat=self._report_if_behind, probe=self._probe,
        )  # fmt: skip
        started = time.time()
        beat.start()
        try:
            status, nxt = self._attempt(ctx, started, lease_next, defer)
        finally:
            beat.stop()
        seconds = time.time() - started
        if status is not None:  # else deferred: recorded when its batch commits
            self.outcomes.append(Ended(item.id, status, seconds))
            self.observer.on_outcome(item.id, status, seconds)
        if beat.vanished:  # the heartbeat found the item gone: the queue lost its data
            self._watch.vanished(item.id)
        return nxt

    def _attempt(
        self, ctx: TaskContext, started: float, lease_next: bool,
        defer: list[Finished] | None = None,
    ) -> tuple[Outcome | None, Lease | None]:  # fmt: skip
        item = ctx.item
        try:
            result = self._run_task(ctx)
            ctx.check()
            outputs = self._write_record(ctx, result, started)
            self.storage.seal(outputs)  # durable before the commit promises them
        except Shutdown:
            self._settle.discard(ctx)
            self._stopping.set()
            return self._settle.release(item.id, ctx.token, RELEASE_BUDGET), None
        except LeaseLost as exc:
            self._settle.discard(ctx)
            log.warning("abandoned %s: %s", item.id, exc)
            return Outcome.EXPIRED, None
        except QueueUnavailable as exc:  # the task could not read the queue: not the item's fault
            self._settle.discard(ctx)
            log.warning("%s: the queue was unreachable during the task: %s", item.id, exc)
            return self._settle.release(item.id, ctx.token, self.config.lease_ttl), None
        except Exception as exc:  # the task failed: retry, or dead
            self._settle.discard(ctx)
            return self._settle.fail(ctx, exc), None
        if defer is not None and ctx.lineage_step is None:
            defer.append(Finished(ctx, result, outputs, started, time.time() - started))
            return None, None
        then = (self.id, self.config.lease_ttl) if not self._stopping.is_set() else None
        return self._settle.commit(ctx, result, outputs, started, then if lease_next else None)

    def _run_task(self, ctx: TaskContext) -> dict[str, Any]:
        """Run the item's task; SIGTERM past the grace period interrupts it with Shutdown."""
        self._in_task = True
        try:
            task = self.tasks.prepare(ctx.item.payload, self.storage)  # nothing else runs
            return task(ctx, ctx.item.payload) or {}
        finally:
            self._in_task = False
            self._cancel_grace_timer()

    def _write_record(
        self, ctx: TaskContext, result: dict[str, Any], started: float
    ) -> list[Publication]:
        """Stage ``runs/<run>/records/<item>.json``: the committed item, as the report reads it.

        Returns every publication of the attempt, the record last: each staged file is hashed
        once (a train step's checkpoint is MBs)."""
        item = ctx.item
        publications = ctx.publications()
        outputs = [p.to_json() for p in publications]
        record = {
            "item_id": item.id,
            "task": item.payload.get("task"),
            "payload": item.payload,
            "run": ctx.run,
            "attempt": item.attempts,
            "token": ctx.token,
            "worker": self.id,
            "started_at": started,
            "finished_at": time.time(),
            "result": result,
            "lineage": ctx.lineage_step.head.to_json() if ctx.lineage_step else None,
            "generation": self._watch.generation,  # tells a lost item from a purged one
            "outputs": outputs,
        }
        final = self.storage.run_path(ctx.run, "records", f"{safe_name(item.id)}.json")
        ctx.output(final).write_text(canonical_json(record) + "\n")
        return [*publications, ctx.publication(final)]

"""The thread that keeps a lease alive while its task runs.

It renews the lease every ``interval`` seconds. If the queue says the token is stale, the lease
is lost for good: the thread sets ``lost`` and stops, and the worker abandons the attempt. If
the queue is unreachable it keeps trying (sooner than usual) until the lease would have expired
on its own; only then is the lease given up as lost. After each renewal it calls ``on_beat``
(the worker sends a status report it held back); an error there is logged, never fatal.

With a ``probe`` (:class:`~batchml.worker.storage_probe.StorageProbe`), a renewal is made only
while the storage root answers: a task blocked on a hung network file system then loses its
lease in ``ttl`` seconds, as a dead worker's would, and another worker can take the item; the
stuck attempt, once it returns, is fenced (its commit is refused) and publishes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from batchml.errors import LeaseLost, QueueUnavailable, UnknownItem
from batchml.queue.base import WorkQueue
from batchml.worker.observer import WorkerObserver
from batchml.worker.storage_probe import StorageProbe


class Heartbeat(threading.Thread):
    def __init__(
        self,
        queue: WorkQueue,
        item_id: str,
        token: int,
        ttl: float,
        interval: float,
        lost: threading.Event,
        log: logging.Logger,
        observer: WorkerObserver | None = None,
        on_beat: Callable[[], None] | None = None,
        probe: StorageProbe | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{item_id}", daemon=True)
        self.queue = queue
        self.item_id = item_id
        self.token = token
        self.ttl = ttl
        self.interval = interval
        self.lost = lost
        self.log = log
        self.observer = observer or WorkerObserver()
        self.on_beat = on_beat
        self.probe = probe
        self.vanished = False  # the queue no longer knows the item (it lost its data)
        self._halt = threading.Event()
        self._expires = time.monotonic() + ttl
        self._withheld = ""  # why the last renewal was withheld ("" after a renewal)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=self.interval + 5)

    def _after_beat(self) -> None:
        if self.on_beat is None or self._halt.is_set():
            return
        try:
            self.on_beat()
        except Exception:  # the lease matters more than what the hook wanted to do
            self.log.exception("after the heartbeat of %s", self.item_id)

    def run(self) -> None:
        wait = self.interval
        planned = time.monotonic() + wait
        while not self._halt.wait(wait):
            lag = max(time.monotonic() - planned, 0.0)
            if self.probe is not None and not self.probe.answers():
                if self._expire_unless_left("the storage root does not answer"):
                    return
                wait = min(self.interval, max((self._expires - time.monotonic()) / 4, 0.1))
                planned = time.monotonic() + wait
                continue
            try:
                self.queue.heartbeat(self.item_id, self.token, self.ttl)
            except (LeaseLost, UnknownItem) as exc:  # stale token, or the item is gone
                if self._halt.is_set():  # the item was committed while this renewal was on its way
                    return
                self.vanished = isinstance(exc, UnknownItem)
                self.log.warning("lease lost on %s: %s", self.item_id, exc)
                self.observer.on_lease_lost(self.item_id)
                self.lost.set()
                return
            except QueueUnavailable as exc:
                if self._expire_unless_left(f"the queue is unreachable ({exc})"):
                    return
                left = self._expires - time.monotonic()
                wait = min(self.interval, max(left / 4, 0.1))
                planned = time.monotonic() + wait
                continue
            self._withheld = ""
            self.observer.on_heartbeat(self.item_id, lag)
            self._after_beat()
            self._expires = time.monotonic() + self.ttl
            wait = self.interval
            planned = time.monotonic() + wait

    def _expire_unless_left(self, why: str) -> bool:
        """No renewal this time (``why``): True, with the lease given up as lost, once it would
        have expired by now; else False (the caller tries again sooner)."""
        left = self._expires - time.monotonic()
        if left <= 0:
            self.log.warning("lease on %s expired: %s", self.item_id, why)
            self.observer.on_lease_lost(self.item_id)
            self.lost.set()
            return True
        level = logging.DEBUG if self._withheld == why else logging.WARNING  # once per cause
        self._withheld = why
        self.log.log(
            level, "not renewing the lease on %s: %s; %.1fs of lease left", self.item_id, why, left
        )
        return False

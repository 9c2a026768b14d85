"""The thread that keeps a lease alive while its task runs.

It renews the lease every ``interval`` seconds. If the queue says the token is stale, the lease
is lost for good: the thread sets ``lost`` and stops, and the worker abandons the attempt. If
the queue is unreachable it keeps trying (sooner than usual) until the lease would have expired
on its own; only then is the lease given up as lost. After each renewal it calls ``on_beat``
(the worker sends a status report it held back); an error there is logged, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from batchml.errors import LeaseLost, QueueUnavailable, UnknownItem
from batchml.queue.base import WorkQueue
from batchml.worker.observer import WorkerObserver


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
        self.vanished = False  # the queue no longer knows the item (it lost its data)
        self._halt = threading.Event()
        self._expires = time.monotonic() + ttl

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
                left = self._expires - time.monotonic()
                if left <= 0:
                    self.log.warning(
                        "lease on %s expired while the queue was unreachable", self.item_id
                    )
                    self.observer.on_lease_lost(self.item_id)
                    self.lost.set()
                    return
                self.log.warning("heartbeat failed (%s); retrying, %.1fs of lease left", exc, left)
                wait = min(self.interval, max(left / 4, 0.1))
                planned = time.monotonic() + wait
                continue
            self.observer.on_heartbeat(self.item_id, lag)
            self._after_beat()
            self._expires = time.monotonic() + self.ttl
            wait = self.interval
            planned = time.monotonic() + wait

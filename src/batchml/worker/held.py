"""The leases a prefetching worker holds but is not running: kept alive until it runs them.

A worker started with ``--prefetch N`` leases N items at once. The ones waiting their turn, and
the finished ones whose commit waits for the batch, are renewed here every heartbeat interval,
all of them, by one thread; the item that runs has its own :class:`~batchml.worker.heartbeat.
Heartbeat`. A lease the queue refuses to renew (expired, taken over, gone) is marked lost: the
worker skips it, or finds its commit refused. A killed worker renews nothing: its leases expire
and the next lease by any worker reclaims them.
"""

from __future__ import annotations

import logging
import threading

from batchml.errors import LeaseLost, QueueUnavailable, UnknownItem
from batchml.queue.base import Lease, WorkQueue


class HeldLeases(threading.Thread):
    def __init__(self, queue: WorkQueue, ttl: float, interval: float, log: logging.Logger) -> None:
        super().__init__(name="held-leases", daemon=True)
        self.queue, self.ttl, self.interval, self.log = queue, ttl, interval, log
        self._held: dict[str, Lease] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def hold(self, lease: Lease) -> None:
        """Keep ``lease`` alive from now on (a new one, or one whose item has finished)."""
        with self._lock:
            self._held[lease.item.id] = lease

    def drop(self, lease: Lease) -> bool:
        """Stop renewing ``lease``; False if it was lost meanwhile (do not run it)."""
        with self._lock:
            self._held.pop(lease.item.id, None)
            if lease.item.id in self._lost:
                self._lost.discard(lease.item.id)
                return False
            return True

    def forget(self, item_id: str) -> None:
        """Stop renewing the lease on ``item_id`` (its commit is on its way)."""
        with self._lock:
            self._held.pop(item_id, None)
            self._lost.discard(item_id)

    def leases(self) -> list[Lease]:
        with self._lock:
            return list(self._held.values())

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=self.interval + 5)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            for lease in self.leases():
                if self._halt.is_set():
                    return
                self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        item_id = lease.item.id
        try:
            self.queue.heartbeat(item_id, lease.token, self.ttl)
        except (LeaseLost, UnknownItem) as exc:
            with self._lock:
                if self._held.get(item_id) is lease:  # not taken (or committed) meanwhile
                    self._held.pop(item_id)
                    self._lost.add(item_id)
                    self.log.warning("prefetched lease lost on %s: %s", item_id, exc)
        except QueueUnavailable as exc:  # tried again next interval; a lease may expire meanwhile
            self.log.warning("could not renew the prefetched lease on %s: %s", item_id, exc)

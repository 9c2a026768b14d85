"""Hooks a worker calls as it works, for metrics and logs; the default does nothing.

Metrics exporters subclass :class:`WorkerObserver` and override what they count. Hooks run on
the worker's threads (``on_heartbeat`` on the heartbeat thread) and must be quick and never
raise.
"""

from __future__ import annotations

from batchml.queue.base import Lease, Outcome


class WorkerObserver:
    def on_start(self, worker_id: str) -> None:
        """The worker started."""

    def on_lease(self, lease: Lease) -> None:
        """An item was leased."""

    def on_outcome(self, item_id: str, status: Outcome, seconds: float) -> None:
        """An attempt ended (``status``: done, failed, dead, released or expired)."""

    def on_heartbeat(self, item_id: str, lag: float) -> None:
        """A lease was renewed ``lag`` seconds later than planned (0 when on time)."""

    def on_lease_lost(self, item_id: str) -> None:
        """The queue refused a heartbeat: another worker may own the item."""

    def on_idle(self) -> None:
        """Nothing was leasable; the worker polls again."""

    def on_exit(self, code: int) -> None:
        """The worker loop ended with this exit code."""

"""The worker runtime: lease → heartbeat → run the task → commit | fail, until the queue drains.

``loop``       :class:`Worker`, the lease/run/settle loop, its signals and its exit code
``settle``     commit, fail or release an attempt whatever the network does
``heartbeat``  the thread that keeps a lease alive
``retry``      retrying a queue call while the queue is unreachable (capped backoff, jitter)
``observer``   the hooks a worker calls (metrics, logs)
``publish``    rolling committed outputs forward, clearing stale staging folders
``dataloss``   telling a queue that lost its data from one that is finished
``local``      running N worker processes on this machine

``Worker`` is imported on first use, so ``import batchml.worker.observer`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchml.worker.loop import Worker

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from batchml.worker.loop import Worker

        return Worker
    raise AttributeError(f"module 'batchml.worker' has no attribute {name!r}")

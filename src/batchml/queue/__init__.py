"""Work queues: one contract (:mod:`batchml.queue.base`), one module per backend."""

from __future__ import annotations

from batchml.errors import ConfigError
from batchml.queue.base import (
    Item,
    ItemSpec,
    Lease,
    LineageHead,
    LineageStep,
    PushOutcome,
    QueueOptions,
    RetryPolicy,
    State,
    WorkQueue,
)

__all__ = [
    "Item",
    "ItemSpec",
    "Lease",
    "LineageHead",
    "LineageStep",
    "PushOutcome",
    "QueueOptions",
    "RetryPolicy",
    "State",
    "WorkQueue",
    "open_queue",
]


def open_queue(url: str, options: QueueOptions | None = None) -> WorkQueue:
    """Open the queue a URL names: ``sqlite:///path/queue.db`` or ``redis://host:port/db``."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from batchml.queue.sqlite import SqliteQueue, path_from_url

        return SqliteQueue(path_from_url(url), options)
    if scheme in ("redis", "rediss"):
        import importlib

        redis_backend = importlib.import_module("batchml.queue.redis")  # issue 3: Redis backend
        queue: WorkQueue = redis_backend.RedisQueue.from_url(url, options)
        return queue
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite:///path/to/queue.db or redis://host:port/db"
    )

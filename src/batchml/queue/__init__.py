"""Work queues: one contract (:mod:`batchml.queue.base`), one module per backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchml.errors import ConfigError, QueueNotFound
from batchml.queue.base import (
    Commit,
    Item,
    ItemSpec,
    Lease,
    LineageHead,
    LineageStep,
    Outcome,
    PushOutcome,
    QueueOptions,
    RetryPolicy,
    State,
    WorkQueue,
)

__all__ = [
    "Commit",
    "ConnectOptions",
    "Item",
    "ItemSpec",
    "Lease",
    "LineageHead",
    "LineageStep",
    "Outcome",
    "PushOutcome",
    "QueueOptions",
    "RetryPolicy",
    "State",
    "WorkQueue",
    "open_queue",
]


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach a networked backend (Redis); the embedded SQLite queue ignores them."""

    password: str | None = field(default=None, repr=False)  # overrides one in the URL
    ca_file: Path | None = None  # CA bundle that signed the server's certificate (rediss://)
    connect_timeout: float = 5.0  # seconds to open a connection
    socket_timeout: float = 10.0  # seconds to wait for any reply


def open_queue(
    url: str,
    options: QueueOptions | None = None,
    connect: ConnectOptions | None = None,
    *,
    create: bool = True,
) -> WorkQueue:
    """Open the queue a URL names: ``sqlite:///path/queue.db`` or ``redis://host:port/db``.

    With ``create=False`` (commands that only read or work a queue) a queue that does not exist
    raises QueueNotFound instead of being made: a SQLite file that is not there, a Redis queue
    with neither a generation nor items (never pushed to, purged, or lost by a Redis that
    restarted without its data). With ``create=True`` a SQLite file is made if missing, but
    never its folder: a typo must not leave folders behind (the storage root's default
    ``queue.db`` is under the root, which the commands that create create first)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from batchml.queue.sqlite.fs import path_from_url
        from batchml.queue.sqlite.queue import SqliteQueue

        path = path_from_url(url)
        if not create and not path.is_file():
            raise QueueNotFound(
                f"no queue at {path.absolute()}: the file does not exist; push items first "
                "(batchml queue push) or check --queue / --root"
            )
        if not path.absolute().parent.is_dir():
            raise ConfigError(
                f"cannot open the SQLite queue {path.absolute()}: the folder "
                f"{path.absolute().parent} does not exist; create it first, or fix --queue"
            )
        return SqliteQueue(path, options)
    if scheme in ("redis", "rediss"):
        from batchml.queue.redis.queue import RedisQueue

        queue = RedisQueue.from_url(url, options, connect)
        if not create and queue.generation() is None and not any(queue.counts().values()):
            queue.close()  # (items without a generation: filled by a batchml from before them)
            raise QueueNotFound(
                f"no queue named {queue.address.name!r} at {queue.url}: nothing was ever pushed "
                "to it, it was purged, or Redis lost its data (restarted without appendonly?); "
                "push items first (batchml queue push)"
            )
        return queue
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite:///path/to/queue.db or redis://host:port/db"
    )

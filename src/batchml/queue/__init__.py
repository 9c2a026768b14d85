"""Work queues: one contract (:mod:`batchml.queue.base`), one module per backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchml.errors import ConfigError, QueueNotFound
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
    "ConnectOptions",
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

    With ``create=False`` a SQLite file that does not exist raises QueueNotFound instead of
    being created (for the commands that only read a queue)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from batchml.queue.sqlite import SqliteQueue, path_from_url

        path = path_from_url(url)
        if not create and not path.exists():
            raise QueueNotFound(
                f"no SQLite queue at {path}: check --root / --queue (BATCHML_ROOT / "
                "BATCHML_QUEUE), or queue work first (`batchml queue push`)"
            )
        return SqliteQueue(path, options)
    if scheme in ("redis", "rediss"):
        from batchml.queue.redis import RedisQueue

        return RedisQueue.from_url(url, options, connect)
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite:///path/to/queue.db or redis://host:port/db"
    )

"""Every Redis key of a queue, named in one place.

A queue called NAME (``redis://host:port/db?name=NAME``, default ``batchml``) owns the keys
``batchml:{NAME}:<part>``. The braces are a Redis Cluster hash tag: every key of one queue maps
to the same slot, so each Lua script may touch all of them. Scripts never build key names: each
receives the keys it uses as ``KEYS`` (:data:`SCRIPT_KEYS`, in any order; ``prelude.lua`` tells
them apart by their part), and hash *fields* (item ids, run names) are given to it as ``ARGV``.

``batchml:{NAME}:ready`` is a plain list whose length is the number of items in state ``ready``
(its elements are placeholders): KEDA's ``redis`` scaler reads it with ``LLEN``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchml.errors import ConfigError

PREFIX = "batchml"
DEFAULT_NAME = "batchml"

#: every key of a queue, by the part after ``batchml:{NAME}:``. Each state has one index:
#: waiting, done, dead and blocked a ``state:*`` zset; ready ``queue`` or ``delayed`` (and one
#: element of ``ready``); leased ``deadlines``.
PARTS: tuple[str, ...] = (
    "items",  # hash   id -> item record, payload and commit included (MessagePack, scripts only)
    "order",  # zset   id scored by push sequence (items() in push order)
    "seq",  # string push sequence counter
    "queue",  # zset   ready now: member "<seq:016d><id>", score -priority
    "delayed",  # zset   ready after a backoff: id scored by available_at (ms)
    "deadlines",  # zset   leased: id scored by lease deadline (ms)
    "state:waiting",  # zsets  id scored by push sequence, for the states without another index
    "state:done",
    "state:dead",
    "state:blocked",
    "ready",  # list   LLEN = number of ready items (for KEDA's redis scaler)
    "lineage-head",  # hash   run -> head JSON of its latest version
    "lineage",  # hash   "<run>#<version>" -> head JSON
    "history",  # list   ended attempts (JSON), newest last, capped
    "workers",  # hash   worker id -> its last self-report (JSON)
    "workers-seen",  # zset   worker id scored by when its report arrived (ms)
    "generation",  # string the queue's generation id, set (NX) by a push, deleted by a purge
)

#: the state indexes kept as zsets scored by push sequence
STATE_PARTS = ("state:waiting", "state:done", "state:dead", "state:blocked")
_MOVES = ("items", "queue", "delayed", "ready", *STATE_PARTS)  # what a state change touches

#: the keys each script receives as KEYS (its header lists the same); fewer keys, less to send
SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "push": (*_MOVES, "order", "seq", "generation"),
    "lease": (*_MOVES, "deadlines", "history"),
    "heartbeat": ("items", "deadlines"),
    "complete": (*_MOVES, "deadlines", "history", "lineage-head", "lineage"),
    "complete_and_lease": (*_MOVES, "deadlines", "history", "lineage-head", "lineage"),
    "commit_and_lease": (*_MOVES, "deadlines", "history", "lineage-head", "lineage"),
    "fail": (*_MOVES, "deadlines", "history"),
    "release": (*_MOVES, "deadlines", "history"),
    "requeue_dead": _MOVES,
    "report_worker": ("workers", "workers-seen"),
    "get": ("items",),
    "items": ("items", "order", "queue", "delayed", "deadlines", *STATE_PARTS),
    "reset_lineage": (*_MOVES, "deadlines", "lineage-head", "lineage"),
}  # fmt: skip

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def check_name(name: str) -> str:
    """A queue name, or ConfigError: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not _NAME.match(name):
        raise ConfigError(
            f"queue name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-' "
            "(e.g. ?name=batchml)"
        )
    return name


@dataclass(frozen=True)
class QueueKeys:
    """The key names of one queue."""

    name: str

    def __post_init__(self) -> None:
        check_name(self.name)

    def key(self, part: str) -> str:
        if part not in PARTS:
            raise KeyError(part)
        return f"{PREFIX}:{{{self.name}}}:{part}"

    @property
    def all(self) -> list[str]:
        """Every key of the queue."""
        return [self.key(part) for part in PARTS]

    def for_script(self, script: str) -> list[str]:
        """The keys a Lua script receives as KEYS."""
        return [self.key(part) for part in SCRIPT_KEYS[script]]

    @property
    def ready_list(self) -> str:
        """The list KEDA's redis scaler reads (``listName``)."""
        return self.key("ready")

    def state(self, state: str) -> str:
        return self.key(f"state:{state}")


def lineage_field(run: str, version: int) -> str:
    """The field of one lineage version in the ``lineage`` hash (a version has no ``#``)."""
    return f"{run}#{version}"

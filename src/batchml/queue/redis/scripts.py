"""Calling the queue's Lua scripts: one round trip per operation.

Each script is ``lua/<name>.lua`` behind ``lua/prelude.lua`` and a generated line that names its
KEYS (:func:`script_source`), called by :class:`ScriptCaller` over one connection it holds, each
script's fixed part packed once: on a slow CPU, redis-py's generic path (a connection taken from
the pool and given back, every argument packed) costs more client time than the round trip
itself.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from batchml.queue.redis.keys import SCRIPT_KEYS

_SCRIPTS: dict[str, tuple[str, str]] = {}


def script_source(name: str) -> tuple[str, str]:
    """The source of ``lua/<name>.lua`` behind the shared prelude, and its SHA1."""
    if name not in _SCRIPTS:
        folder = resources.files("batchml.queue.redis").joinpath("lua")
        source = _key_binding(SCRIPT_KEYS[name]) + "\n"
        source += folder.joinpath("prelude.lua").read_text() + "\n"
        # the body runs as a function, so that the records it saved are written back (flush)
        # whichever of its returns it takes
        source += "local function main()\n" + folder.joinpath(f"{name}.lua").read_text()
        source += "\nend\nlocal reply = main()\nflush()\nreturn reply\n"
        _SCRIPTS[name] = (source, hashlib.sha1(source.encode()).hexdigest())
    return _SCRIPTS[name]


def _key_binding(parts: Sequence[str]) -> str:
    """The Lua line that names a script's KEYS by part: ``local K = {items = KEYS[1], ...}``."""
    plain, states = [], []
    for index, part in enumerate(parts, start=1):
        if part.startswith("state:"):
            states.append(f"{part.removeprefix('state:')} = KEYS[{index}]")
        else:
            plain.append(f"{part.replace('-', '_')} = KEYS[{index}]")
    fields = [*plain, "state = {" + ", ".join(states) + "}"]
    return "local K = {" + ", ".join(fields) + "}"


def _bulk(value: str | int | float) -> bytes:
    """One argument in the Redis protocol, encoded as redis-py encodes it."""
    data = value.encode() if isinstance(value, str) else repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Script:
    """A Lua script bound to the keys of one queue, with the fixed part of its EVALSHA call
    (the SHA1 and the key names) packed once."""

    source: str
    sha: str
    head: bytes  # EVALSHA, the SHA1, the number of keys and the keys, as bulk strings
    size: int  # how many arguments ``head`` holds

    @classmethod
    def load(cls, name: str, keys: Sequence[str]) -> Script:
        """``lua/<name>.lua`` for a queue whose keys are ``keys`` (keys.SCRIPT_KEYS order)."""
        source, sha = script_source(name)
        fixed: list[str | int] = ["EVALSHA", sha, len(keys), *keys]
        return cls(source, sha, b"".join(_bulk(part) for part in fixed), len(fixed))


class ScriptCaller:
    """Calls scripts over one connection of the client's pool, held between calls; the worker's
    threads (its loop, its heartbeat) take turns on it. A failed call drops the connection (its
    reply may be half read) and the next call opens it again; redis-py errors are left to the
    caller to translate."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pool: Any = client.connection_pool  # its API differs between redis-py releases
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def evalsha(self, script: Script, args: Sequence[str | int | float]) -> Any:
        command = b"*%d\r\n" % (script.size + len(args)) + script.head
        command += b"".join(_bulk(arg) for arg in args)
        with self._lock:
            conn = self._connection()
            try:
                conn.send_packed_command([command])
                return conn.read_response()
            except redis.ResponseError:
                raise  # an error reply, read whole: the connection is still in step
            except BaseException:
                conn.disconnect()  # the reply may still be on its way: never read it as another's
                raise

    def script_load(self, source: str) -> str:
        return str(self._client.script_load(source))

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            self._conn, self._pid = _take_connection(self._pool), os.getpid()
        elif self._stale(self._conn):  # closed by the server (a restart, an idle timeout)
            self._conn.disconnect()  # and the next send opens it again
        return self._conn

    @staticmethod
    def _stale(conn: Any) -> bool:
        """Whether an open connection, idle between calls, has something to read: its end."""
        if not _is_open(conn):
            return False  # the next send opens it
        try:
            return bool(conn.can_read())
        except (redis.ConnectionError, OSError):
            return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._pool.release(self._conn)
            self._conn = None


def _take_connection(pool: Any) -> Any:
    """A connection from the pool. redis-py before 5.3 requires a command name (unused since);
    from 5.3 on, passing one is deprecated."""
    wanted = inspect.signature(pool.get_connection).parameters.get("command_name")
    if wanted is not None and wanted.default is inspect.Parameter.empty:
        return pool.get_connection("EVALSHA")
    return pool.get_connection()


def _is_open(conn: Any) -> bool:
    """Whether the connection holds a socket (``is_connected`` is newer than redis-py 5.0)."""
    if hasattr(type(conn), "is_connected"):
        return bool(conn.is_connected)
    return conn._sock is not None

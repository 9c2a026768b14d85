"""Calling the queue's operations over one held connection: ``FCALL``, or ``EVALSHA`` without
Functions.

:class:`ScriptCaller` holds one connection of the client's pool between calls (the worker's
threads, its loop and its heartbeat, take turns on it) and sends each call packed whole: on a
slow CPU, redis-py's generic path (a connection taken from the pool and given back, every
argument packed) costs more client time than the round trip itself.

Which form it uses (:mod:`batchml.queue.redis.scripts`) is found on the first call: ``FCALL``;
a server that lacks the library (never loaded, restarted without its data, ``FUNCTION FLUSH``)
gets it with ``FUNCTION LOAD`` and the call is sent again; a server without Functions (Redis
6), or an ACL that refuses them, is called with ``EVALSHA`` from then on, with ``SCRIPT LOAD``
when it forgot a script. An error reply of that kind means the call did not run, so sending it
again never runs an operation twice.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Sequence
from typing import Any

import redis

from batchml.queue.redis.scripts import Script, library_source, packed

#: error replies to FCALL or FUNCTION LOAD that say Functions are not available to this client
_NO_FUNCTIONS = ("unknown command", "noperm", "no permissions")


class ScriptCaller:
    """Calls operations over one connection of the client's pool. A failed call drops the
    connection (its reply may be half read) and the next call opens it again; redis-py errors
    are left to the caller to translate."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pool: Any = client.connection_pool  # its API differs between redis-py releases
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()
        self.functions = True  # until the server says it has none for us

    def call(self, script: Script, args: Sequence[str | int | float]) -> Any:
        """Run ``script`` with ``args``: its reply, or the redis-py error."""
        with self._lock:
            if self.functions:
                try:
                    return self._send(packed(script.fcall, script.size, args))
                except redis.ResponseError as exc:
                    if not self._missing_library(exc):
                        raise
                if self.functions:
                    return self._send(packed(script.fcall, script.size, args))
            try:
                return self._send(packed(script.evalsha, script.size, args))
            except redis.exceptions.NoScriptError:  # a restarted server forgot its scripts
                self._client.script_load(script.source)
                return self._send(packed(script.evalsha, script.size, args))

    def load(self, script: Script) -> None:
        """Load ``script`` on the server in the form calls will use (the library, or the
        script itself without Functions)."""
        with self._lock:
            if self.functions:
                self._load_library()
            if not self.functions:
                self._client.script_load(script.source)

    def _missing_library(self, exc: redis.ResponseError) -> bool:
        """Whether ``exc``, the reply to an FCALL, says the call did not run for want of the
        library (then it is loaded) or of Functions (then calls use EVALSHA from now on)."""
        text = str(exc).lower()
        if "function not found" in text:
            self._load_library()
            return True
        if any(marker in text for marker in _NO_FUNCTIONS) and "fcall" in text:
            self.functions = False
            return True
        return False

    def _load_library(self) -> None:
        source, _ = library_source()
        try:
            self._client.function_load(source)
        except redis.ResponseError as exc:
            text = str(exc).lower()
            if "already exists" in text:
                return  # loaded meanwhile by another client: the same source, by its name
            if any(marker in text for marker in _NO_FUNCTIONS):
                self.functions = False
                return
            raise

    def _send(self, command: bytes) -> Any:
        conn = self._connection()
        try:
            conn.send_packed_command([command])
            return conn.read_response()
        except redis.ResponseError:
            raise  # an error reply, read whole: the connection is still in step
        except BaseException:
            conn.disconnect()  # the reply may still be on its way: never read it as another's
            raise

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
        return pool.get_connection("FCALL")
    return pool.get_connection()


def _is_open(conn: Any) -> bool:
    """Whether the connection holds a socket (``is_connected`` is newer than redis-py 5.0)."""
    if hasattr(type(conn), "is_connected"):
        return bool(conn.is_connected)
    return conn._sock is not None

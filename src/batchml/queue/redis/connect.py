"""Reaching Redis: the queue URL, passwords and TLS, calling the scripts, and redis-py's errors
turned into ours.

URL form: ``redis://[user[:password]@]host[:port][/db][?name=QUEUE]``, or ``rediss://`` for TLS
(the server's certificate is checked against the system's CAs, or ``--redis-ca-file``). Port
6379, db 0 and queue name ``batchml`` are the defaults. A password may come from the URL or,
better, from ``--redis-password`` / ``BATCHML_REDIS_PASSWORD`` (which wins); it is never part of
the queue's displayed URL nor of any message.

Errors: what a retry cannot fix (bad URL, wrong password, missing ACL permission, untrusted
certificate, a Redis Cluster) is a ConfigError; what it can (connection refused or reset,
timeout, Redis loading its data, a read-only replica during failover) is QueueUnavailable.

Scripts (every state change): ``lua/<name>.lua`` behind ``lua/prelude.lua`` and a generated line
that names its KEYS (:func:`script_source`), called by :class:`ScriptCaller` over one connection
it holds, each script's fixed part packed once: on a slow CPU, redis-py's generic path (a
connection taken from the pool and given back, every argument packed) costs more client time
than the round trip itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from batchml.errors import BatchmlError, ConfigError, QueueError, QueueUnavailable
from batchml.queue import ConnectOptions
from batchml.queue.redis.keys import DEFAULT_NAME, PREFIX, SCRIPT_KEYS, check_name

DEFAULT_PORT = 6379

#: replies a retry may get past: failover in progress, data set loading, memory full
_TRANSIENT = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.OutOfMemoryError,  # type: ignore[attr-defined]  # newer than the stubs
)
#: what a Redis ACL user needs (besides its queue's keys): every command batchml sends or its
#: scripts call, TIME included (scripts read the server's clock)
ACL_COMMANDS = "+@read +@write +@scripting +@transaction +@connection +time"

#: replies that say the server is a Redis Cluster node, which this client does not follow
_CLUSTER = (redis.exceptions.AskError, redis.exceptions.ClusterCrossSlotError)


@dataclass(frozen=True)
class RedisAddress:
    """A parsed queue URL."""

    tls: bool
    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    name: str = DEFAULT_NAME
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL without its password: safe to print, and it reopens the same queue."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}{host}:{self.port}/{self.db}?name={self.name}"


def parse_url(url: str) -> RedisAddress:
    """Parse ``redis://`` or ``rediss://`` URLs; ConfigError with the reason otherwise."""
    parts = urlsplit(url)
    shown = _redact(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"{shown} is not a Redis URL (redis://host:port/db or rediss://...)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{shown}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"{shown} names no host: use redis://host:port/db")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"{shown}: the path must be a database number such as /0, not /{path}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"name"})
    if unknown:
        raise ConfigError(f"{shown}: unknown URL parameter(s) {', '.join(unknown)}; only name=")
    name = query.get("name", [DEFAULT_NAME])[-1]
    return RedisAddress(
        tls=parts.scheme == "rediss",
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        name=check_name(name),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def connect(address: RedisAddress, options: ConnectOptions) -> redis.Redis[str]:
    """A client for the address. It connects lazily, and never retries on its own: a retried
    script could run twice, so retrying is the caller's decision (the worker's backoff)."""
    ca_file = None
    if address.tls and options.ca_file is not None:
        if not os.path.isfile(options.ca_file):
            raise ConfigError(
                f"--redis-ca-file {options.ca_file}: no such file; give the PEM bundle of "
                "the CA that signed the Redis server's certificate"
            )
        ca_file = os.fspath(options.ca_file)
    return redis.Redis(
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=options.password or address.password,
        socket_connect_timeout=options.connect_timeout,
        socket_timeout=options.socket_timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        client_name="batchml",
        ssl=address.tls,
        ssl_cert_reqs="required",
        ssl_ca_certs=ca_file,
    )


def translate(exc: redis.RedisError, address: RedisAddress) -> BatchmlError:
    """The project's exception for a redis-py one: one line naming the server and what to do."""
    where = address.url
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, redis.AuthenticationError):
        who = f"user {address.username!r}" if address.username else "the default user"
        return ConfigError(
            f"Redis at {where} refused the credentials of {who} ({text}); check the URL's user "
            "and --redis-password / BATCHML_REDIS_PASSWORD"
        )
    if isinstance(exc, redis.exceptions.NoPermissionError) or _acl_refusal(text):
        return ConfigError(
            f"Redis at {where}: the ACL user lacks a permission ({text}); grant it the keys "
            f"{PREFIX}:{{{address.name}}}:* and {ACL_COMMANDS}"
        )
    if isinstance(exc, redis.BusyLoadingError):
        return QueueUnavailable(f"Redis at {where} is loading its data set; retry shortly")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return _connection_error(text, where, address.tls)
    if isinstance(exc, _TRANSIENT):
        return QueueUnavailable(f"Redis at {where} cannot take writes now ({text}); retry shortly")
    if isinstance(exc, _CLUSTER):
        return ConfigError(
            f"{where} is a Redis Cluster node ({text}); point --queue at a single Redis primary"
        )
    if isinstance(exc, redis.ResponseError):
        return _response_error(text, where)
    return QueueError(f"Redis at {where}: {text}")


def _connection_error(text: str, where: str, tls: bool) -> BatchmlError:
    lowered = text.lower()
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return ConfigError(
            f"TLS with Redis at {where} failed ({text}); check rediss:// against the server's "
            "port and give the CA that signed its certificate with --redis-ca-file"
        )
    hint = " (rediss:// needs the server's TLS port)" if tls and "timeout" in lowered else ""
    return QueueUnavailable(f"cannot reach Redis at {where}: {text}{hint}")


def _acl_refusal(text: str) -> bool:
    """A command refused by the ACL from inside a script (not reported as NOPERM)."""
    return "can't run this command" in text or "no permissions to access" in text.lower()


def _response_error(text: str, where: str) -> BatchmlError:
    if "DB index is out of range" in text:
        return ConfigError(f"{where}: that database number does not exist on the server")
    if "WRONGTYPE" in text:
        return ConfigError(
            f"Redis at {where}: a key of this queue holds other data ({text}); "
            "pick another queue name with ?name="
        )
    if "unknown command" in text.lower():
        return ConfigError(f"Redis at {where} lacks a command batchml needs ({text}); use Redis 6+")
    return QueueError(f"Redis at {where} refused a command: {text}")


_SCRIPTS: dict[str, tuple[str, str]] = {}


def script_source(name: str) -> tuple[str, str]:
    """The source of ``lua/<name>.lua`` behind the shared prelude, and its SHA1."""
    if name not in _SCRIPTS:
        folder = resources.files("batchml.queue.redis").joinpath("lua")
        source = _key_binding(SCRIPT_KEYS[name]) + "\n"
        source += folder.joinpath("prelude.lua").read_text() + "\n"
        source += folder.joinpath(f"{name}.lua").read_text()
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

    def __init__(self, client: redis.Redis[str]) -> None:
        self._client: Any = client  # the stubs leave SCRIPT LOAD untyped, and lag the pool's API
        self._pool: Any = client.connection_pool
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
            self._conn, self._pid = self._pool.get_connection(), os.getpid()
        elif self._stale(self._conn):  # closed by the server (a restart, an idle timeout)
            self._conn.disconnect()  # and the next send opens it again
        return self._conn

    @staticmethod
    def _stale(conn: Any) -> bool:
        """Whether an open connection, idle between calls, has something to read: its end."""
        if not conn.is_connected:
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

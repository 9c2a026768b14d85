"""The Redis queue URL, and a client for it.

Form: ``redis://[user[:password]@]host[:port][/db][?name=QUEUE]``, or ``rediss://`` for TLS
(the server's certificate is checked against the system's CAs, or ``--redis-ca-file``). Port
6379, db 0 and queue name ``batchml`` are the defaults. A password may come from the URL or,
better, from ``--redis-password`` / ``BATCHML_REDIS_PASSWORD`` (which wins); it is never part of
the queue's displayed URL nor of any message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from batchml.errors import ConfigError
from batchml.queue import ConnectOptions
from batchml.queue.redis.keys import DEFAULT_NAME, check_name

DEFAULT_PORT = 6379

#: what a Redis ACL user needs (besides its queue's keys): every command batchml sends or its
#: scripts call, TIME included (scripts read the server's clock)
ACL_COMMANDS = "+@read +@write +@scripting +@transaction +@connection +time"


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


def connect(address: RedisAddress, options: ConnectOptions) -> redis.Redis:
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
        protocol=3,  # RESP3 whichever redis-py is installed (its default from 8.0 on)
        ssl=address.tls,
        ssl_cert_reqs="required",
        ssl_ca_certs=ca_file,
    )

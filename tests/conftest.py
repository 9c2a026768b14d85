"""Shared fixtures: a redis-server for the whole session, and a fresh queue name per test.

``redis_server`` (session) is the base URL of a Redis the session starts on a free port in a
temporary folder (see tests/support/redis_server.py), or ``BATCHML_TEST_REDIS_URL`` when set.
``redis_url`` (per test) is that URL with a queue name of its own, so tests never share keys.
``redis_factory`` starts servers a test owns (to kill and restart them).

Without ``redis-server`` on the PATH these fixtures fail when ``CI=true`` and skip otherwise
(``make system-deps`` installs Debian's package).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.redis_server import RedisServer, TlsFiles, redis_server_binary


def with_queue_name(base_url: str, name: str) -> str:
    """``base_url`` naming the queue ``name`` (any name it had is replaced)."""
    parts = urlsplit(base_url)
    return parts._replace(query=f"name={name}").geturl()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("BATCHML_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer(redis_server_binary(), tmp_path_factory.mktemp("redis-session"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    return with_queue_name(redis_server, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-server processes this test owns (``tls=`` for a TLS-only one,
    ``appendfsync=`` for the AOF's fsync policy, ``everysec`` by default); all are stopped at
    its end."""
    binary = redis_server_binary()
    servers: list[RedisServer] = []

    def start(tls: TlsFiles | None = None, appendfsync: str = "everysec") -> RedisServer:
        server = RedisServer(
            binary, tmp_path / f"redis-{len(servers)}", tls=tls, appendfsync=appendfsync
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()

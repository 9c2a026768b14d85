"""redis-py's errors turned into ours, each one line naming the server and what to do.

What a retry cannot fix (bad URL, wrong password, missing ACL permission, untrusted certificate,
a Redis Cluster) is a ConfigError; what it can (connection refused or reset, timeout, Redis
loading its data, a read-only replica during failover) is QueueUnavailable.
"""

from __future__ import annotations

import redis

from batchml.errors import BatchmlError, ConfigError, QueueError, QueueUnavailable
from batchml.queue.redis.keys import PREFIX
from batchml.queue.redis.url import ACL_COMMANDS, RedisAddress

#: replies a retry may get past: failover in progress, data set loading, memory full
_TRANSIENT = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.OutOfMemoryError,
)
#: replies that say the server is a Redis Cluster node, which this client does not follow
_CLUSTER = (redis.exceptions.AskError, redis.exceptions.ClusterCrossSlotError)


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

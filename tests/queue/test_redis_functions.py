"""The Redis queue's operations as a Redis Functions library: loaded once, loaded again when the
server lost it, side by side with another version's, and EVALSHA scripts where Functions are
refused - every operation running exactly once whichever way it is called."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from batchml.errors import ConfigError, LeaseLost
from batchml.queue import ConnectOptions, open_queue
from batchml.queue.base import Commit, LineageHead, LineageStep, QueueOptions, State
from batchml.queue.redis.queue import RedisQueue
from batchml.queue.redis.scripts import library_source
from batchml.queue.redis.url import ACL_COMMANDS
from tests.support.queue_contract import spec
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def server(redis_factory: Callable[..., RedisServer]) -> Iterator[RedisServer]:
    """A Redis of this test's own, so that its libraries and command counts are this test's."""
    yield redis_factory()


def _admin(url: str) -> redis.Redis[str]:
    return redis.Redis.from_url(url, decode_responses=True)


def _libraries(admin: redis.Redis[str]) -> list[str]:
    listed: Any = admin.function_list()  # each library a flat [field, value, ...] list (RESP2)
    return sorted(
        str(dict(zip(lib[::2], lib[1::2], strict=True))["library_name"]) for lib in listed
    )


def _calls(admin: redis.Redis[str], command: str) -> int:
    return int(admin.info("commandstats").get(f"cmdstat_{command}", {"calls": 0})["calls"])


def test_operations_run_as_functions_of_one_library_loaded_once(server: RedisServer) -> None:
    """Given a fresh server, when a queue is used, then its library is loaded once and every
    operation is an FCALL (no script is evaluated)."""
    admin = _admin(server.url)
    queue = RedisQueue.from_url(f"{server.url}?name=q")
    queue.push([spec(1), spec(2)])
    lease = queue.lease("w", 30)
    assert lease
    nxt = queue.complete_and_lease(lease.item.id, lease.token, worker="w", ttl=30)
    assert nxt and nxt.item.id == "item-2"
    assert _libraries(admin) == [library_source()[1]]
    assert _calls(admin, "function|load") == 1
    assert _calls(admin, "fcall") >= 3 and _calls(admin, "evalsha") == 0


def test_a_server_that_lost_the_library_gets_it_again_and_the_call_runs_once(
    server: RedisServer,
) -> None:
    """Given an item leased, when the server loses every function (FUNCTION FLUSH, as a
    restart without its data would) before the commit, then the commit reloads the library
    and lands exactly once: one 'done' attempt, the next item leased once."""
    admin = _admin(server.url)
    queue = RedisQueue.from_url(f"{server.url}?name=q")
    queue.push([spec(1), spec(2)])
    lease = queue.lease("w", 30)
    assert lease
    admin.function_flush()
    nxt = queue.complete_and_lease(lease.item.id, lease.token, {"r": 1}, worker="w", ttl=30)
    assert nxt and nxt.item.id == "item-2" and nxt.item.attempts == 1
    assert [(h.item_id, h.outcome) for h in queue.history()] == [("item-1", "done")]
    assert queue.get("item-1").result == {"r": 1} and queue.counts()[State.LEASED] == 1
    assert _libraries(admin) == [library_source()[1]]


def test_a_killed_redis_restarted_without_its_functions_is_served_again(
    server: RedisServer,
) -> None:
    """Given a Redis killed and restarted, then a flushed function set is reloaded by the next
    call of a queue that was open all along."""
    admin = _admin(server.url)
    queue = RedisQueue.from_url(f"{server.url}?name=q")
    queue.push([spec(1), spec(2)])
    first = queue.lease("w", 30)
    assert first
    server.kill()
    server.start()
    _admin(server.url).function_flush()
    second = queue.lease("w", 30)
    assert second and second.item.id == "item-2"
    queue.complete(first.item.id, first.token)
    assert queue.get("item-1").state == State.DONE and _libraries(admin) == [library_source()[1]]


def test_another_versions_library_stays_and_never_answers_for_this_one(
    server: RedisServer,
) -> None:
    """Given a library of another batchml version on the server, whose functions have this
    version's operation names, then this version loads its own beside it (never replacing it)
    and its calls run its own code."""
    admin = _admin(server.url)
    other = "batchml_" + "0" * 16
    admin.function_load(
        f"#!lua name={other}\n"
        f"redis.register_function('{other}_lease', function() return {{'other'}} end)\n"
        f"redis.register_function('{other}_push', function() return {{'other'}} end)\n"
    )
    queue = RedisQueue.from_url(f"{server.url}?name=q")
    queue.push([spec(1)])
    lease = queue.lease("w", 30)
    assert lease and lease.item.id == "item-1"
    assert _libraries(admin) == sorted([other, library_source()[1]])
    assert admin.fcall(f"{other}_lease", 0) == ["other"]


def test_a_library_loaded_meanwhile_by_another_client_is_used(server: RedisServer) -> None:
    """Given two queues that both find the library missing, when both load it, then the second
    load (refused: it exists) is no error and both queues work."""
    a = RedisQueue.from_url(f"{server.url}?name=q")
    b = RedisQueue.from_url(f"{server.url}?name=q")
    a._scripting.load(a._scripts["lease"])
    b._scripting.load(b._scripts["lease"])  # the library exists already
    assert a._scripting.functions and b._scripting.functions
    a.push([spec(1), spec(2)])
    leases = [a.lease("w1", 30), b.lease("w2", 30)]
    assert sorted(x.item.id for x in leases if x) == ["item-1", "item-2"]


def test_an_acl_without_functions_gets_scripts_and_every_guarantee(server: RedisServer) -> None:
    """Given a user whose ACL refuses FCALL and FUNCTION, then the queue falls back to EVALSHA
    scripts: fencing, the lineage compare-and-set and batches behave as with Functions."""
    admin = _admin(server.url)
    user = f"u{uuid.uuid4().hex[:8]}"
    rules = ["on", ">pw", "~batchml:{q}:*", "resetchannels", "-@all", *ACL_COMMANDS.split()]
    admin.execute_command("ACL", "SETUSER", user, *rules, "-fcall", "-function")
    host = urlsplit(server.url)
    queue = open_queue(
        f"redis://{user}@{host.hostname}:{host.port}/0?name=q",
        connect=ConnectOptions(password="pw"),
    )
    assert isinstance(queue, RedisQueue)
    queue.push([spec(i) for i in range(1, 5)])
    a = queue.lease("w", 30)
    assert a and not queue._scripting.functions
    step = LineageStep(0, LineageHead(run="r", version=1))
    b = queue.complete_and_lease(a.item.id, a.token, lineage=step, worker="w", ttl=30)
    assert b and b.item.id == "item-2"
    with pytest.raises(LeaseLost):
        queue.complete(a.item.id, a.token)  # fenced: committed already
    more = queue.complete_and_lease_many([Commit(b.item.id, b.token)], worker="w", ttl=30, n=5)
    assert [m.item.id for m in more] == ["item-3", "item-4"]
    assert queue.counts()[State.DONE] == 2 and queue.lineage_head("r").version == 1
    assert _libraries(admin) == [] and _calls(admin, "evalsha") > 0


def test_a_script_refusal_is_not_taken_for_a_missing_library(server: RedisServer) -> None:
    """Given an operation that fails inside the library (an error reply of its own), then the
    error reaches the caller and the queue keeps calling functions."""
    queue = RedisQueue.from_url(f"{server.url}?name=q")
    queue.push([spec(1)])
    _admin(server.url).set("batchml:{q}:deadlines", "not a zset")
    with pytest.raises(ConfigError, match="holds other data"):
        queue.lease("w", 30)
    assert queue._scripting.functions


def _lease_a_batch_then_hang(url: str, functions: bool, ready: Any) -> None:
    """Child process: lease 5, commit 2 of them and lease 3 more in one call, then hang (it is
    killed holding 6 leases)."""
    queue = RedisQueue.from_url(url)
    queue._scripting.functions = functions
    held = queue.lease_many("victim", 30, 5)
    commits = [Commit(h.item.id, h.token) for h in held[:2]]
    queue.complete_and_lease_many(commits, worker="victim", ttl=30, n=3)
    ready.set()
    time.sleep(600)


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_worker_killed_mid_batch_has_every_lease_reclaimed_once(
    server: RedisServer, functions: bool
) -> None:
    """Given a worker process that leased batches (5, then 2 committed and 3 more leased in one
    call) and is SIGKILLed, when its leases' TTL has passed, then the next lease reclaims all 6
    (attempt 2, one 'expired' record each) and every item is committed exactly once."""
    url = f"{server.url}?name=q"
    queue = RedisQueue.from_url(url)
    queue.push([spec(i) for i in range(1, 11)])
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    victim = ctx.Process(target=_lease_a_batch_then_hang, args=(url, functions, ready))
    victim.start()
    assert ready.wait(timeout=60), "the victim never leased"
    os.kill(victim.pid or 0, signal.SIGKILL)
    victim.join(timeout=10)
    held = sorted(i.id for i in queue.items([State.LEASED]))
    assert len(held) == 6
    server_now = float(_admin(server.url).time()[0])
    later = RedisQueue.from_url(url, QueueOptions(clock=lambda: server_now + 31))
    leases = later.lease_many("heir", 30, 100)
    assert sorted(x.item.id for x in leases if x.item.id in held) == held
    assert all(x.item.attempts == 2 for x in leases if x.item.id in held)
    later.complete_and_lease_many([Commit(x.item.id, x.token) for x in leases], worker="heir",
                                  ttl=30, n=0)  # fmt: skip
    done = Counter(h.item_id for h in queue.history() if h.outcome == "done")
    assert done == {f"item-{i}": 1 for i in range(1, 11)}
    assert sorted(h.item_id for h in queue.history() if h.outcome == "expired") == held
    assert queue.drained()

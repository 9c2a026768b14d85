"""The Redis backend against the shared queue contract, plus what only Redis has."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.crc import key_slot

import batchml.queue.redis.queue
from batchml import exitcodes
from batchml.errors import ConfigError, LeaseLost, QueueNotFound, QueueUnavailable
from batchml.queue import ConnectOptions, open_queue
from batchml.queue.base import (
    Commit,
    ItemSpec,
    LineageHead,
    LineageStep,
    PushOutcome,
    QueueOptions,
    RetryPolicy,
    State,
    WorkerInfo,
    WorkQueue,
)
from batchml.queue.redis.keys import PARTS, SCRIPT_KEYS, STATE_PARTS, QueueKeys
from batchml.queue.redis.queue import RedisQueue
from batchml.queue.redis.scripts import Script, script_source
from batchml.queue.redis.url import ACL_COMMANDS, parse_url
from tests.support.cli import run_cli
from tests.support.queue_contract import QueueContract, spec
from tests.support.redis_server import RedisServer, free_port, make_tls_files

pytestmark = pytest.mark.redis


class TestRedisQueue(QueueContract):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url: str) -> None:
        self.url = redis_url

    def make_queue(self, tmp_path: Path, options: QueueOptions) -> WorkQueue:
        return RedisQueue.from_url(self.url, options)


# -- URLs, credentials and errors at the boundary ----------------------------------------------


def _admin(base_url: str) -> redis.Redis[str]:
    return redis.Redis.from_url(base_url, decode_responses=True)


def test_url_forms_and_defaults() -> None:
    a = parse_url("redis://cache")
    assert (a.host, a.port, a.db, a.name, a.tls, a.username, a.password) == (
        "cache", 6379, 0, "batchml", False, None, None,
    )  # fmt: skip
    b = parse_url("rediss://ml:s%40cret@10.0.0.5:6380/3?name=fraud-2")
    assert (b.host, b.port, b.db, b.name, b.tls) == ("10.0.0.5", 6380, 3, "fraud-2", True)
    assert (b.username, b.password) == ("ml", "s@cret")
    assert b.url == "rediss://ml@10.0.0.5:6380/3?name=fraud-2"  # never the password
    assert "s@cret" not in repr(b)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://", "names no host"),
        ("redis://h:notaport/0", "port"),
        ("redis://h:6379/zero", "database number"),
        ("redis://h:6379/0?db=1", "unknown URL parameter"),
        ("redis://h:6379/0?name=a{b}", "queue name"),
        ("redis://u:hunter2@h:6379/x", "database number"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        open_queue(url)
    assert "hunter2" not in str(info.value)


def test_refused_connection_is_unavailable_and_fast() -> None:
    queue = open_queue(f"redis://127.0.0.1:{free_port()}/0", connect=ConnectOptions(password="pw"))
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1:"):
        queue.ping()
    with pytest.raises(QueueUnavailable):
        queue.lease("w", 30)
    assert time.monotonic() - started < 5


def test_wrong_password_is_a_config_error(redis_server: str, redis_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    admin = _admin(redis_server)
    admin.acl_setuser(user, enabled=True, passwords=["+right"], keys=["*"], commands=["+@all"])
    try:
        host = urlsplit(redis_url)
        url = f"redis://{user}:wrong@{host.hostname}:{host.port}/0?{host.query}"
        with pytest.raises(ConfigError, match=f"refused the credentials of user '{user}'") as info:
            open_queue(url).push([ItemSpec(payload={"n": 1})])
        assert "wrong" not in str(info.value).replace("wrong password", "")
        queue = open_queue(url, connect=ConnectOptions(password="right"))  # the option wins
        assert queue.push([ItemSpec(payload={"n": 1})]) == [PushOutcome.ADDED]
    finally:
        admin.acl_deluser(user)


def test_missing_acl_permission_is_a_config_error(redis_server: str, redis_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    admin = _admin(redis_server)
    admin.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["other:*"], commands=["+@all"])
    try:
        host = urlsplit(redis_url)
        url = f"redis://{user}@{host.hostname}:{host.port}/0?{host.query}"
        queue = open_queue(url, connect=ConnectOptions(password="pw"))
        queue.ping()  # reachable, and allowed to PING
        with pytest.raises(ConfigError, match=r"lacks a permission.*batchml:\{t-"):
            queue.lease("w", 30)
    finally:
        admin.acl_deluser(user)


def test_missing_database_and_ca_file_are_config_errors(redis_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database number does not exist"):
        open_queue(redis_url.replace("/0?", "/999?")).ping()
    with pytest.raises(ConfigError, match="--redis-ca-file"):
        open_queue("rediss://h:6380/0", connect=ConnectOptions(ca_file=tmp_path / "none.pem"))


# -- keys and scripts --------------------------------------------------------------------------

LUA = Path(batchml.queue.redis.queue.__file__).parent / "lua"


def test_every_key_of_a_queue_is_in_one_cluster_slot() -> None:
    keys = QueueKeys("fraud").all
    assert len(keys) == len(PARTS) and all(k.startswith("batchml:{fraud}:") for k in keys)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert QueueKeys("fraud").ready_list == "batchml:{fraud}:ready"


def test_each_script_gets_the_keys_its_header_names() -> None:
    """Given SCRIPT_KEYS, then every script's header lists exactly those keys (state:* for the
    five state indexes), and the prelude documents every part."""
    prelude = (LUA / "prelude.lua").read_text()
    for part in PARTS:
        documented = part if not part.startswith("state:") else "state:waiting|done|dead"
        assert f"--   {documented}" in prelude, part
    for name, parts in SCRIPT_KEYS.items():
        text = (LUA / f"{name}.lua").read_text()
        header = re.search(r"-- KEYS: (.*(?:\n--       .*)*)", text)
        assert header, name
        listed = {k.strip() for k in header.group(1).replace("--", "").split(",")}
        expected = {p for p in parts if not p.startswith("state:")}
        if any(p.startswith("state:") for p in parts):
            expected.add("state:*")
            assert tuple(p for p in parts if p.startswith("state:")) == STATE_PARTS
        assert listed == expected, name


def test_each_script_states_its_keys_and_argv_and_never_scans() -> None:
    scripts = sorted(LUA.glob("*.lua"))
    assert {p.stem for p in scripts} >= {
        "prelude", "push", "lease", "heartbeat", "complete", "fail", "release",
        "requeue_dead", "report_worker", "items",
    }  # fmt: skip
    for path in scripts:
        text = path.read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
        assert "KEYS" in header, path.name
        if path.stem != "prelude":
            assert "ARGV[1]" in header and "Reply" in header, path.name
        code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
        assert not re.search(r"'(KEYS|SCAN|HSCAN|ZSCAN|SSCAN)'", code, re.I), path.name
        assert "..':'" not in code.replace(" ", "") and "batchml:" not in code, path.name


def test_ready_list_length_is_the_number_of_ready_items(redis_server: str, redis_url: str) -> None:
    """Given any sequence of operations, then LLEN of the KEDA list equals counts()[ready]."""
    queue = RedisQueue.from_url(redis_url, QueueOptions(retry=RetryPolicy(backoff_base=60)))
    llen = _admin(redis_server).llen
    key = queue.keys.ready_list

    def check() -> None:  # the list, the count and the items whose record says ready agree
        ready = [i.id for i in queue.items() if i.state == State.READY]
        assert llen(key) == queue.counts()[State.READY] == len(ready)
        assert [i.id for i in queue.items([State.READY])] == ready

    queue.push([spec(i) for i in range(5)] + [spec("w", depends_on=("item-0",))])
    check()
    a, b = queue.lease("w", 30), queue.lease("w", 30)
    assert a and b
    check()
    queue.complete(a.item.id, a.token)  # item-w becomes ready
    check()
    assert queue.fail(b.item.id, b.token, "boom") == State.READY  # ready, after a backoff
    check()
    assert llen(key) == 5
    queue.purge()
    check()
    assert llen(key) == 0


class LostReply:
    """Runs the real call, then loses its reply once (as a connection reset would)."""

    def __init__(self, inner: Any, script_name: str) -> None:
        self.inner, self.sha, self.armed = inner, script_source(script_name)[1], True

    def call(self, script: Script, args: Any) -> Any:
        reply = self.inner.call(script, args)
        if script.sha == self.sha and self.armed:
            self.armed = False
            raise redis.ConnectionError("Connection reset by peer")
        return reply

    def load(self, script: Script) -> None:
        self.inner.load(script)

    def close(self) -> None:
        self.inner.close()


def test_lease_retried_after_a_lost_reply_gets_the_same_lease(redis_url: str) -> None:
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1), spec(2)])
    queue._scripting = LostReply(queue._scripting, "lease")
    with pytest.raises(QueueUnavailable):
        queue.lease("w1", 30)
    again = queue.lease("w1", 30)
    assert again and again.item.id == "item-1" and again.token == 1 and again.item.attempts == 1
    other = queue.lease("w1", 30)
    assert other and other.item.id == "item-2"


def test_complete_and_lease_retried_after_a_lost_reply_gets_the_same_lease(
    redis_url: str,
) -> None:
    """Given a combined call that committed item-1 and leased item-2 but lost its reply, when
    it is retried, then the retry returns that lease (one attempt, token 1), not a second."""
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1), spec(2), spec(3)])
    first = queue.lease("w1", 30)
    assert first
    queue._scripting = LostReply(queue._scripting, "complete_and_lease")
    with pytest.raises(QueueUnavailable):
        queue.complete_and_lease("item-1", first.token, {"n": 1}, worker="w1", ttl=30)
    again = queue.complete_and_lease("item-1", first.token, {"n": 1}, worker="w1", ttl=30)
    assert again and again.item.id == "item-2" and again.token == 1 and again.item.attempts == 1
    assert queue.get("item-1").state == State.DONE and queue.get("item-3").state == State.READY
    last = queue.complete_and_lease("item-2", again.token, worker="w1", ttl=30)
    assert last and last.item.id == "item-3"


def test_a_batch_retried_after_a_lost_reply_gets_the_same_leases(redis_url: str) -> None:
    """Given a batch that committed two items and leased two more but lost its reply, when it
    is retried, then the retry returns those two leases (one attempt each), not two more."""
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(i) for i in range(1, 7)])
    held = queue.lease_many("w1", 30, 2)
    commits = [Commit(h.item.id, h.token) for h in held]
    queue._scripting = LostReply(queue._scripting, "commit_and_lease")
    with pytest.raises(QueueUnavailable):
        queue.complete_and_lease_many(commits, worker="w1", ttl=30, n=2)
    again = queue.complete_and_lease_many(commits, worker="w1", ttl=30, n=2)
    assert [(g.item.id, g.token, g.item.attempts) for g in again] == [
        ("item-3", 1, 1), ("item-4", 1, 1),
    ]  # fmt: skip
    assert queue.counts()[State.DONE] == 2 and queue.counts()[State.READY] == 2
    nxt = queue.lease_many("w1", 30, 5)
    assert [g.item.id for g in nxt] == ["item-5", "item-6"]


def test_complete_and_lease_retried_after_it_committed_and_leased_nothing_is_stale(
    redis_url: str,
) -> None:
    """Given a combined call that committed the last item and lost its reply, when it is
    retried, then it is refused as stale - and the item is done under that token, which is
    how the worker recognises that its commit landed (batchml.worker.settle)."""
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1)])
    lease = queue.lease("w1", 30)
    assert lease
    queue._scripting = LostReply(queue._scripting, "complete_and_lease")
    with pytest.raises(QueueUnavailable):
        queue.complete_and_lease("item-1", lease.token, worker="w1", ttl=30)
    with pytest.raises(LeaseLost):
        queue.complete_and_lease("item-1", lease.token, worker="w1", ttl=30)
    item = queue.get("item-1")
    assert item.state == State.DONE and item.token == lease.token and queue.drained()


def test_a_call_interrupted_before_its_reply_never_hands_that_reply_to_the_next(
    redis_url: str,
) -> None:
    """Given a script call sent but interrupted before its reply was read (as a signal's
    exception would), then the next call on the held connection reads its own reply, never the
    interrupted one's."""
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1), spec(2)])
    queue._scripting.load(queue._scripts["lease"])  # so that the call runs it
    conn = queue._scripting._connection()

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        assert conn.can_read(timeout=5)  # the reply has arrived: the script did run
        raise KeyboardInterrupt

    conn.read_response = interrupted
    with pytest.raises(KeyboardInterrupt):
        queue.lease("w", 30)  # the script ran and leased item-1; its reply is never read
    del conn.read_response
    lease = queue.lease("w", 30)
    assert lease and lease.item.id == "item-2"
    assert queue.get("item-1").state == State.LEASED


def test_scripts_are_loaded_again_after_a_flush(redis_server: str, redis_url: str) -> None:
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1)])
    _admin(redis_server).script_flush()
    lease = queue.lease("w", 30)
    assert lease and lease.item.id == "item-1"


def test_without_an_injected_clock_the_server_time_is_used(
    redis_server: str, redis_url: str
) -> None:
    queue = RedisQueue.from_url(redis_url)
    queue.push([spec(1)])
    lease = queue.lease("w", 30)
    server_now = float(_admin(redis_server).time()[0])
    assert lease and lease.deadline == pytest.approx(server_now + 30, abs=2)
    assert queue.heartbeat("item-1", lease.token, 60) == pytest.approx(server_now + 60, abs=2)


def test_acknowledged_writes_survive_a_killed_redis(
    redis_factory: Callable[..., RedisServer],
) -> None:
    # `always`, as the Kubernetes manifests run it: with `everysec` Redis may postpone the AOF
    # write up to 2 s while a background fsync runs and still reply, so a SIGKILL can lose
    # acknowledged writes on a busy disk (seen once in CI: the pushed items were gone).
    server = redis_factory(appendfsync="always")
    url = f"{server.url}?name=durable"
    queue = RedisQueue.from_url(url)
    queue.push([spec(1), spec(2)])
    lease = queue.lease("w", 30)
    assert lease
    step = LineageStep(0, LineageHead(run="r", version=1, dataset="d1"))
    queue.complete(lease.item.id, lease.token, {"ok": True}, lineage=step)
    server.kill()
    with pytest.raises(QueueUnavailable):
        queue.counts()
    server.start()
    assert queue.get("item-1").state == State.DONE and queue.get("item-1").result == {"ok": True}
    assert queue.lineage_head("r").dataset == "d1"
    second = queue.lease("w", 30)  # the scripts are loaded again (NOSCRIPT fallback)
    assert second and second.item.id == "item-2"


def test_tls_needs_the_ca_file_and_says_so(
    redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """Given a TLS-only Redis with a certificate from a private CA, then rediss:// with
    --redis-ca-file works; without it, and plain redis://, fail with one clear line."""
    tls = make_tls_files(tmp_path / "tls")
    server = redis_factory(tls=tls)
    url = f"{server.url}?name=tls"
    queue = open_queue(url, connect=ConnectOptions(ca_file=tls.ca))
    queue.push([spec(1)])
    assert queue.lease("w", 30)
    with pytest.raises(ConfigError, match=r"TLS with Redis at rediss://.*--redis-ca-file"):
        open_queue(url, connect=ConnectOptions(connect_timeout=2, socket_timeout=2)).ping()
    plain = url.replace("rediss://", "redis://")
    with pytest.raises(QueueUnavailable, match="cannot reach Redis at redis://"):
        open_queue(plain, connect=ConnectOptions(connect_timeout=2, socket_timeout=2)).ping()


# -- the CLI against Redis ---------------------------------------------------------------------


def test_cli_administers_a_redis_queue(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = ("--root", str(tmp_path / "root"), "--queue", redis_url)
    queue = open_queue(redis_url)
    queue.push([spec(1, max_attempts=1), spec(2)])
    lease = queue.lease("w", 30)
    assert lease and queue.fail(lease.item.id, lease.token, "ValueError: bad row 7") == State.DEAD

    status = json.loads(run_cli(capsys, *cli, "queue", "status", "--json").out)
    assert status["counts"]["dead"] == 1 and status["counts"]["ready"] == 1
    [dead] = status["dead"]
    assert (dead["id"], dead["attempts"], dead["error"]) == ("item-1", 1, "ValueError: bad row 7")
    assert "requeued 1" in run_cli(capsys, *cli, "queue", "requeue-dead").out
    assert queue.get("item-1").state == State.READY

    check = run_cli(capsys, *cli, "worker", "--check")
    assert check.code == exitcodes.OK and "queue reachable" in check.out

    refused = run_cli(capsys, *cli, "queue", "purge")
    assert refused.code == exitcodes.CONFIG and "--yes" in refused.err
    assert run_cli(capsys, *cli, "queue", "purge", "--yes").code == exitcodes.OK
    assert queue.items() == [] and sum(queue.counts().values()) == 0


def test_worker_check_fails_fast_with_one_line_when_redis_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run_cli(capsys, "--root", str(tmp_path), "--queue", url, "worker", "--check")
    assert result.code == exitcodes.UNAVAILABLE and time.monotonic() - started < 5
    assert result.err.count("\n") == 1 and "cannot reach Redis at redis://127.0.0.1:" in result.err
    assert "Traceback" not in result.err


def test_password_from_the_environment_never_shows(
    redis_server: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    user = f"u{uuid.uuid4().hex[:8]}"
    admin = _admin(redis_server)
    admin.acl_setuser(user, enabled=True, passwords=["+s3cr3t-pw"], keys=["*"], commands=["+@all"])
    try:
        host = urlsplit(redis_url)
        url = f"redis://{user}@{host.hostname}:{host.port}/0?{host.query}"
        cli = ("--root", str(tmp_path), "--queue", url)
        monkeypatch.setenv("BATCHML_REDIS_PASSWORD", "s3cr3t-pw")
        assert run_cli(capsys, *cli, "queue", "add", "noop").code == 0  # status needs a queue
        ok = run_cli(capsys, *cli, "queue", "status", "--json")
        assert ok.code == 0 and json.loads(ok.out)["queue"] == url
        monkeypatch.setenv("BATCHML_REDIS_PASSWORD", "wrong-pw")
        bad = run_cli(capsys, *cli, "queue", "status")
        assert bad.code == exitcodes.CONFIG and "refused the credentials" in bad.err
        assert "pw" not in (ok.out + ok.err + bad.out + bad.err).replace("--redis-password", "")
    finally:
        admin.acl_deluser(user)


def test_the_documented_acl_is_enough_for_every_operation(
    redis_server: str, redis_url: str
) -> None:
    """Given a user with only the queue's keys and ACL_COMMANDS, then every operation works."""
    user = f"u{uuid.uuid4().hex[:8]}"
    admin = _admin(redis_server)
    host = urlsplit(redis_url)
    name = host.query.removeprefix("name=")
    rules = ["on", ">pw", f"~batchml:{{{name}}}:*", "resetchannels", "-@all", *ACL_COMMANDS.split()]
    admin.execute_command("ACL", "SETUSER", user, *rules)
    try:
        url = f"redis://{user}@{host.hostname}:{host.port}/0?{host.query}"
        queue = open_queue(url, connect=ConnectOptions(password="pw"))
        queue.ping()
        queue.push([spec(1), spec(2, max_attempts=1), spec(3)])
        a, b = queue.lease("w", 30), queue.lease("w", 30)
        assert a and b
        queue.heartbeat(a.item.id, a.token, 30)
        step = LineageStep(0, LineageHead(run="r", version=1))
        c = queue.complete_and_lease(a.item.id, a.token, lineage=step, worker="w", ttl=30)
        assert c and c.item.id == "item-3"
        queue.complete(c.item.id, c.token)
        queue.fail(b.item.id, b.token, "boom")
        queue.report_worker(WorkerInfo(id="w", host="h", pid=1, started_at=0.0))
        assert queue.requeue_dead() == 1 and queue.get("item-2").state == State.READY
        lease = queue.lease("w", 30)
        assert lease
        queue.release(lease.item.id, lease.token)
        assert [i.id for i in queue.items([State.READY])] == ["item-2"]
        assert queue.counts()[State.DONE] == 2 and queue.lineage("r")[0].version == 1
        assert queue.workers()[0].id == "w" and queue.history()[-1].outcome == "released"
        assert isinstance(queue, RedisQueue) and queue._scripting.functions  # FCALL allowed too
        queue.purge()
    finally:
        admin.acl_deluser(user)


# -- opening without creating, generation, lineage reset ---------------------------------------


def test_open_without_create_refuses_a_queue_that_has_no_generation(
    redis_server: str, redis_url: str
) -> None:
    """Given a Redis queue nothing was pushed to, when opened with create=False, then
    QueueNotFound names the queue and the URL, never the password; after a push it opens; after
    the data is lost (FLUSHALL stands for a restart without persistence) it is refused again."""
    url = redis_url.replace("redis://", "redis://:hunter2@")
    name = urlsplit(redis_url).query.split("=", 1)[1]
    with pytest.raises(QueueNotFound, match=f"no queue named '{name}'") as refused:
        open_queue(url, connect=ConnectOptions(password=""), create=False)
    assert "hunter2" not in str(refused.value) and "127.0.0.1" in str(refused.value)
    pusher = open_queue(redis_url)
    pusher.push([ItemSpec(payload={"n": 1})])
    opened = open_queue(redis_url, create=False)
    assert opened.generation() == pusher.generation()
    keys = QueueKeys(name)
    _admin(redis_server).delete(keys.key("generation"))  # as a batchml before generations left it
    assert open_queue(redis_url, create=False).counts()[State.READY] == 1
    _admin(redis_server).delete(*keys.all)
    with pytest.raises(QueueNotFound, match="Redis lost its data"):
        open_queue(redis_url, create=False)


def test_lineage_reset_keeps_the_keda_list_in_step(redis_server: str, redis_url: str) -> None:
    """Given a re-armed item that was ready (its retry delayed) and done ones, then LLEN of the
    ready list still equals the number of ready items."""
    queue = RedisQueue.from_url(redis_url, QueueOptions(retry=RetryPolicy(backoff_base=60)))
    queue.push([ItemSpec(payload={"run": "r"}, id="a"), ItemSpec(payload={"run": "r"}, id="b")])
    a = queue.lease("w", 30)
    assert a and a.item.id == "a"
    queue.complete("a", a.token)
    b = queue.lease("w", 30)
    assert b and b.item.id == "b"
    assert queue.fail("b", b.token, "boom") == State.READY  # ready, after a 60 s backoff
    queue.reset_lineage("r", 0, ["a", "b"])
    assert _admin(redis_server).llen(queue.keys.ready_list) == queue.counts()[State.READY] == 2
    assert {i.id for i in queue.items([State.READY])} == {"a", "b"}
    assert [queue.lease("w", 30).item.id for _ in range(2)] == ["a", "b"]  # type: ignore[union-attr]

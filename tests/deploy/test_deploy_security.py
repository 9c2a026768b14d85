"""deploy/: what the rendered manifests let each part do, and what they forbid.

Every object in the namespace ``batchml``, which enforces the "restricted" Pod Security
Standard, and every rendered pod passing it (tests/support/deploy_pss.py); Redis's ACL users as its
config defines them, then a Redis running that very config (tests/support/deploy_run.py), where each
user may do what it needs and is refused what it does not; the passwords only in the Secret you
create.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from batchml.queue import ConnectOptions
from batchml.queue.base import ItemSpec, State
from batchml.queue.redis.keys import PREFIX, QueueKeys
from batchml.queue.redis.queue import RedisQueue
from batchml.queue.redis.url import ACL_COMMANDS, parse_url
from tests.support.deploy_manifests import (
    CLUSTER_SCOPED,
    KEDA_PASSWORD,
    NAMESPACE,
    NAMESPACED,
    OVERLAYS,
    SECRET,
    WORKERS_PASSWORD,
    acl_users,
    batchml_workloads,
    environment,
    find,
    of_kind,
    render,
    workloads,
)
from tests.support.deploy_pss import violations
from tests.support.deploy_run import PASSWORDS, rendered_redis
from tests.support.redis_server import redis_server_binary

ALL = ("base", *OVERLAYS)


# --- the namespace and Pod Security -----------------------------------------------------------


@pytest.mark.parametrize("overlay", ALL)
def test_every_namespaced_object_is_in_the_batchml_namespace(overlay: str) -> None:
    for obj in render(overlay):
        kind, meta = obj["kind"], obj["metadata"]
        where = f"{overlay} {kind}/{meta['name']}"
        assert kind in CLUSTER_SCOPED | NAMESPACED, f"{where}: is this kind namespaced?"
        if kind in CLUSTER_SCOPED:
            assert "namespace" not in meta, where
        else:
            assert meta.get("namespace") == NAMESPACE, where


@pytest.mark.parametrize("overlay", ALL)
def test_the_namespace_enforces_the_restricted_pod_security_standard(overlay: str) -> None:
    (namespace,) = of_kind(render(overlay), "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode
        # pinned: a cluster upgrade must not change the rules under running Jobs
        assert re.fullmatch(r"v1\.\d+", labels[f"pod-security.kubernetes.io/{mode}-version"])
    assert len({v for k, v in labels.items() if k.endswith("-version")}) == 1


@pytest.mark.parametrize("overlay", ALL)
def test_every_pod_passes_the_restricted_pod_security_standard(overlay: str) -> None:
    """Every pod template (Job, StatefulSet, ScaledJob, Pod) as the admission controller of a
    namespace labelled enforce=restricted sees it: tests/support/deploy_pss.py lists what it
    breaks."""
    pods = list(workloads(render(overlay)))
    kinds = {w.obj["kind"] for w in pods}
    assert {"Job", "StatefulSet", "Pod"} <= kinds and ("ScaledJob" in kinds) == (overlay == "keda")
    for w in pods:
        assert violations(w.pod) == [], f"{overlay} {w.name}"


def _good_pod() -> dict:
    return copy.deepcopy(find(render("base"), "Job", "batchml-score")["spec"]["template"])


def _worker(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


#: one breach of each rule of the restricted profile, and what the report must say
BREACHES: list[tuple[str, Callable[[dict], object], str]] = [
    ("root user", lambda p: _worker(p)["securityContext"].update(runAsUser=0), "runAsUser"),
    ("root allowed", lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    ("escalation", lambda p: _worker(p)["securityContext"].pop("allowPrivilegeEscalation"),
     "allowPrivilegeEscalation"),
    ("capabilities kept", lambda p: _worker(p)["securityContext"].pop("capabilities"), "drop ALL"),
    ("capability added",
     lambda p: _worker(p)["securityContext"]["capabilities"].update(add=["CHOWN"]),
     "NET_BIND_SERVICE"),
    ("no seccomp", lambda p: p["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    ("unconfined",
     lambda p: _worker(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "seccompProfile"),
    ("privileged", lambda p: _worker(p)["securityContext"].update(privileged=True), "privileged"),
    ("host network", lambda p: p["spec"].update(hostNetwork=True), "hostNetwork"),
    ("host PID", lambda p: p["spec"].update(hostPID=True), "hostPID"),
    ("host port", lambda p: _worker(p)["ports"][0].update(hostPort=9400), "hostPort"),
    ("hostPath", lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
     "hostPath"),
    ("nfs volume",
     lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
     "not an allowed type"),
    ("proc mount", lambda p: _worker(p)["securityContext"].update(procMount="Unmasked"),
     "procMount"),
    ("sysctl", lambda p: p["spec"]["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "safe sysctl"),
    ("SELinux", lambda p: _worker(p)["securityContext"].update(
        seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"),
    ("AppArmor", lambda p: _worker(p)["securityContext"].update(
        appArmorProfile={"type": "Unconfined"}), "appArmorProfile"),
    ("root init container", lambda p: p["spec"]["initContainers"][0].update(
        securityContext={"runAsUser": 0, "runAsNonRoot": False,
                         "allowPrivilegeEscalation": False,
                         "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}),
     "initContainers[queue-scoring]: runAsNonRoot"),
]  # fmt: skip


@pytest.mark.parametrize(("breach", "make", "said"), BREACHES, ids=[b[0] for b in BREACHES])
def test_the_pod_security_check_catches_each_breach(
    breach: str, make: Callable[[dict], object], said: str
) -> None:
    pod = _good_pod()
    assert violations(pod) == []
    make(pod)
    found = violations(pod)
    assert any(said in line for line in found), (breach, found)


# --- the Secret and Redis's users -------------------------------------------------------------


def _queue(objs: list[dict]) -> str:
    (config,) = [c for c in of_kind(objs, "ConfigMap") if c["metadata"]["name"] == "batchml-config"]
    return str(config["data"]["BATCHML_QUEUE"])


@pytest.mark.parametrize("overlay", ALL)
def test_passwords_come_from_the_secret_each_to_its_user_only(overlay: str) -> None:
    objs = render(overlay)
    referenced: dict[tuple[str, str], set[str]] = {}
    for w in workloads(objs):
        for c in w.containers():
            for var in environment(objs, c).values():
                if any(word in var.name for word in ("PASSWORD", "AUTH", "TOKEN", "SECRET")):
                    assert var.secret is not None, f"{w.name} {c['name']} {var.name}: a literal"
                    referenced.setdefault(var.secret, set()).add(w.name)
    assert set(referenced) == {WORKERS_PASSWORD, KEDA_PASSWORD}
    assert referenced[KEDA_PASSWORD] == {"StatefulSet/redis"}  # no batchml pod knows it
    assert {w.name for w in batchml_workloads(objs)} <= referenced[WORKERS_PASSWORD]
    address = parse_url(_queue(objs))
    assert address.username == "batchml" and address.password is None
    # The only Secret rendered is KEDA's user name: no password is in any manifest.
    secrets = of_kind(objs, "Secret")
    assert [s["metadata"]["name"] for s in secrets] == (["redis-keda-user"] * (overlay == "keda"))
    for secret in secrets:
        assert set(secret["data"]) == {"username"}
    for auth in of_kind(objs, "TriggerAuthentication"):
        refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        assert refs == {"username": ("redis-keda-user", "username"), "password": KEDA_PASSWORD}


@pytest.mark.parametrize("overlay", ALL)
def test_redis_users_have_the_least_rights_their_clients_need(overlay: str) -> None:
    objs = render(overlay)
    users = acl_users(objs)
    assert set(users) == {"default", "batchml", "keda"}
    # default (any connection before AUTH): off, no password, no key, no command
    assert {"off", "resetpass", "resetkeys", "-@all"} <= set(users["default"])
    assert not [r for r in users["default"] if r[0] in "+~%>#&"]
    name = parse_url(_queue(objs)).name
    queue_keys = f"{PREFIX}:{{{name}}}:*"
    batchml = users["batchml"]
    assert batchml[:2] == ["on", "#@BATCHML_PASSWORD_SHA256@"]
    assert [r for r in batchml if r[0] in "~%&"] == [f"~{queue_keys}"]  # its queue's keys only
    grants = [r for r in batchml if r[0] == "+"]
    assert grants == ACL_COMMANDS.split()  # what src/batchml/queue/redis/url.py needs
    assert batchml.index("-@all") < batchml.index(grants[0])  # from nothing, then those
    assert "-@dangerous" in batchml[batchml.index(grants[-1]) :]  # and never those
    keda = users["keda"]
    ready = QueueKeys(name).key("ready")
    assert keda[:2] == ["on", "#@KEDA_PASSWORD_SHA256@"]
    assert [r for r in keda if r[0] in "~%&"] == [f"~{ready}"]  # that one list
    # and read commands only: no script can write with them
    assert [r for r in keda if r[0] in "+-"] == ["-@all", "+ping", "+eval", "+type", "+llen"]
    for scaled in of_kind(objs, "ScaledJob"):
        assert scaled["spec"]["triggers"][0]["metadata"]["listName"] == ready
    for secret in of_kind(objs, "Secret"):
        assert base64.b64decode(secret["data"]["username"]).decode() == "keda"


#: what KEDA's current redis scaler sends to read a length: TYPE, then LLEN for a list
KEDA_LENGTH_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'list' or kind == 'none' then return redis.call('LLEN', KEYS[1]) end
return redis.error_reply('not a list: ' .. kind)
"""
#: how Redis words an ACL refusal (NOPERM; from inside a script, the key or command it denied)
ACL_REFUSAL = re.compile(r"NOPERM|no permissions|can't access|can't run", re.IGNORECASE)


def _refused(call: Callable[[], object]) -> None:
    """``call`` must get an ACL refusal from Redis."""
    with pytest.raises(redis.ResponseError) as refusal:
        call()
    assert ACL_REFUSAL.search(str(refusal.value)), refusal.value


@pytest.mark.redis
def test_each_redis_user_may_do_what_it_needs_and_nothing_else(tmp_path: Path) -> None:
    """Given the rendered Redis (its users.conf as rendered, passwords from the Secret), then
    the worker's user runs the queue but is refused FLUSHALL, KEYS, CONFIG, INFO, another
    prefix's keys (also from a script); KEDA's user reads the ready list's length (as KEDA
    asks: LLEN, or TYPE and LLEN in an EVAL) and nothing else; without a user nothing works."""
    redis_server_binary()
    objs = render("keda")
    url = _queue(objs)
    name = parse_url(url).name
    other = "other:{x}:key"
    with rendered_redis(objs, tmp_path, PASSWORDS) as (cluster, _):
        port = cluster.redis_port
        worker = redis.Redis(
            port=port,
            username="batchml",
            password=PASSWORDS[WORKERS_PASSWORD],
            decode_responses=True,
        )
        keda = redis.Redis(
            port=port, username="keda", password=PASSWORDS[KEDA_PASSWORD], decode_responses=True
        )
        # The queue works as this user: push, lease, complete, counts (each a Lua script).
        queue = RedisQueue.from_url(
            cluster.queue_url(url),  # as the user batchml, the Secret's password
            connect_options=ConnectOptions(password=PASSWORDS[WORKERS_PASSWORD]),
        )
        queue.push([ItemSpec(payload={"task": "t", "n": 1}, id="a")])
        assert keda.llen(QueueKeys(name).key("ready")) == 1  # what KEDA scales on
        lease = queue.lease("w", 30)
        assert lease is not None
        queue.heartbeat(lease.item.id, lease.token, 30)
        queue.complete(lease.item.id, lease.token, {"ok": True})
        assert queue.drained() and queue.counts()[State.DONE] == 1
        queue.requeue_dead()
        queue.close()
        worker.set(f"{PREFIX}:{{{name}}}:probe", "1")
        # ...and nothing outside its keys and commands.
        for refused in (
            worker.flushall,
            lambda: worker.keys("*"),
            lambda: worker.config_get("*"),
            worker.info,
            lambda: worker.set(other, "1"),
            lambda: worker.get(other),
            lambda: worker.eval("return redis.call('SET', KEYS[1], '1')", 1, other),
            lambda: worker.eval("return redis.call('SET', 'other:{x}:y', '1')", 0),
            lambda: worker.execute_command("FUNCTION", "FLUSH"),
            worker.script_flush,
            lambda: worker.client_kill_filter(_type="normal"),
            worker.acl_list,
        ):
            _refused(refused)
        assert worker.get(f"{PREFIX}:{{{name}}}:probe") == "1"  # FLUSHALL did nothing
        # KEDA's user: the ready list's length, as KEDA asks for it (its current scaler: TYPE, then
        # the length command for that type, in one EVAL; older ones: LLEN), PING, nothing else.
        assert keda.ping()
        ready = QueueKeys(name).key("ready")
        worker.rpush(ready, "1", "1")
        assert keda.eval(KEDA_LENGTH_SCRIPT, 1, ready) == 2 and keda.llen(ready) == 2
        for refused in (
            lambda: keda.eval("return redis.call('RPUSH', KEYS[1], '1')", 1, ready),
            lambda: keda.eval("return redis.call('DEL', KEYS[1])", 1, ready),
            lambda: keda.eval(KEDA_LENGTH_SCRIPT, 1, QueueKeys(name).key("items")),
            lambda: keda.llen(QueueKeys(name).key("items")),
            lambda: keda.get(QueueKeys(name).key("ready")),
            lambda: keda.rpush(QueueKeys(name).key("ready"), "1"),
            lambda: keda.lpop(QueueKeys(name).key("ready")),
            keda.flushall,
            lambda: keda.keys("*"),
            lambda: keda.evalsha("0" * 40, 0),
        ):
            _refused(refused)
        # No user, the default one, or a wrong password: refused before any command.
        once = Retry(NoBackoff(), 0)  # redis-py would retry a refused login for seconds
        with (
            redis.Redis(port=port, retry=once) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
        for user, password in (("default", ""), ("batchml", PASSWORDS[KEDA_PASSWORD])):
            with (
                redis.Redis(port=port, username=user, password=password, retry=once) as wrong,
                pytest.raises(redis.AuthenticationError),
            ):
                wrong.ping()
        worker.close()
        keda.close()


@pytest.mark.redis
def test_redis_will_not_start_with_an_empty_password(tmp_path: Path) -> None:
    """An empty key in the Secret would make a user anyone could log in as: the rendered Redis
    container refuses to start, naming the Secret."""
    redis_server_binary()
    empty = {**PASSWORDS, KEDA_PASSWORD: ""}
    with (
        pytest.raises(AssertionError, match=f"Secret {SECRET} needs a non-empty password"),
        rendered_redis(render("base"), tmp_path, empty),
    ):
        pass

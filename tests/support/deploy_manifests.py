"""The Kubernetes manifests of deploy/k8s as rendered objects, and the pod specs inside them.

``render(overlay)`` runs ``kubectl kustomize`` (cached per session); the helpers below walk
what it printed the way the kubelet would see it: pod templates of Jobs, StatefulSets and KEDA
ScaledJobs, init containers before containers, and each container's environment resolved from
its ``envFrom`` ConfigMaps and ``env`` entries.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.ci import unavailable

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("gke-filestore", "gke-spot", "local", "keda")

Obj = dict[str, Any]

NAMESPACE = "batchml"
#: the Secret you create (deploy/README.md): one password per Redis ACL user, keyed by its name
SECRET = "redis-users"
WORKERS_PASSWORD = (SECRET, "batchml")
KEDA_PASSWORD = (SECRET, "keda")
#: kinds that have no namespace; every other kind rendered here must be in NAMESPACE
CLUSTER_SCOPED = frozenset({"Namespace", "PersistentVolume"})
NAMESPACED = frozenset({
    "ConfigMap", "Secret", "Service", "StatefulSet", "Job", "Pod", "PersistentVolumeClaim",
    "NetworkPolicy", "ScaledJob", "TriggerAuthentication",
})  # fmt: skip


def kubectl() -> str:
    """kubectl's path; without it the manifest tests skip locally and fail in CI."""
    found = shutil.which("kubectl")
    if found is None:
        unavailable("kubectl is not installed (it renders deploy/k8s with `kubectl kustomize`)")
    return found


@cache
def _render(directory: str) -> tuple[Obj, ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", directory], check=False, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(overlay: str) -> list[Obj]:
    """Every object an overlay (or ``base``) renders to."""
    directory = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    return list(_render(str(directory)))


def render_directory(directory: Path) -> list[Obj]:
    """Every object a kustomization directory (an edited copy, say) renders to."""
    return list(_render(str(directory)))


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


@dataclass(frozen=True)
class Workload:
    """An object that makes pods, and the pod spec it makes them from."""

    obj: Obj
    pod: Obj  # the pod template: {"metadata": ..., "spec": ...}

    @property
    def name(self) -> str:
        return f"{self.obj['kind']}/{self.obj['metadata']['name']}"

    @property
    def spec(self) -> Obj:
        return dict(self.pod["spec"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.pod.get("metadata", {}).get("labels", {}))

    @property
    def job_spec(self) -> Obj | None:
        """The Job spec (a Job's own, or a ScaledJob's jobTargetRef); None for other kinds."""
        if self.obj["kind"] == "Job":
            return dict(self.obj["spec"])
        if self.obj["kind"] == "ScaledJob":
            return dict(self.obj["spec"]["jobTargetRef"])
        return None

    def containers(self) -> list[Obj]:
        """Init containers, then containers."""
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    def container(self, name: str) -> Obj:
        matches = [c for c in self.containers() if c["name"] == name]
        assert len(matches) == 1, f"{self.name}: no single container named {name}"
        return matches[0]


def workloads(objs: list[Obj]) -> Iterator[Workload]:
    for obj in objs:
        kind = obj["kind"]
        if kind == "Pod":
            yield Workload(obj, {"metadata": obj["metadata"], "spec": obj["spec"]})
        elif kind in ("Job", "StatefulSet", "Deployment", "DaemonSet"):
            yield Workload(obj, obj["spec"]["template"])
        elif kind == "ScaledJob":
            yield Workload(obj, obj["spec"]["jobTargetRef"]["template"])


def batchml_workloads(objs: list[Obj]) -> list[Workload]:
    """The workloads running the batchml image (not Redis)."""
    return [w for w in workloads(objs) if w.labels.get("app.kubernetes.io/name") == "batchml"]


def is_worker(container: Obj) -> bool:
    return container.get("args", [])[:1] == ["worker"] and "command" not in container


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None  # a literal, from `value` or from a ConfigMap
    secret: tuple[str, str] | None = None  # (Secret name, key)
    field: str | None = None  # a downward-API fieldPath


def environment(objs: list[Obj], container: Obj) -> dict[str, EnvVar]:
    """A container's variables as Kubernetes sets them: envFrom first, then env overrides."""
    env: dict[str, EnvVar] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom source {source}"
        data = find(objs, "ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({k: EnvVar(k, value=v) for k, v in data.items()})
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = EnvVar(name, value=str(var["value"]))
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            env[name] = EnvVar(
                name, secret=(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            )
        elif "fieldRef" in ref:
            env[name] = EnvVar(name, field=ref["fieldRef"]["fieldPath"])
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {ref}")
    return env


def data_mount(workload: Workload, container: Obj) -> str | None:
    """Where a container mounts the shared volume (the PVC batchml-data), if it does."""
    claims = {
        v["name"]
        for v in workload.spec.get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == "batchml-data"
    }
    paths = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in claims]
    assert len(paths) <= 1, f"{container['name']} mounts the shared volume twice"
    return paths[0] if paths else None


def redis_files(objs: list[Obj]) -> dict[str, str]:
    """The files of Redis's config volume (its ConfigMap's data): redis.conf, users.conf."""
    spec = find(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if "configMap" in v]
    return dict(find(objs, "ConfigMap", volume["configMap"]["name"])["data"])


def acl_users(objs: list[Obj]) -> dict[str, list[str]]:
    """Redis's ACL users as its config defines them: each ``user NAME rule...`` line of
    users.conf, by name (passwords still as their ``#@..._SHA256@`` marks)."""
    users: dict[str, list[str]] = {}
    for line in redis_files(objs)["users.conf"].splitlines():
        words = line.split()
        if words and words[0] == "user":
            assert words[1] not in users, f"user {words[1]} is defined twice"
            users[words[1]] = words[2:]
        else:
            assert not words or words[0].startswith("#"), f"users.conf: {line!r}"
    return users

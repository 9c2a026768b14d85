"""Run a rendered container's command here, as the kubelet would run it in the cluster.

The command and arguments are the manifest's; the environment is the one Kubernetes would give
(ConfigMaps, Secret references, the downward API). Only what must differ on this machine is
mapped: the shared volume's mount path (and every other in-cluster path) to local folders, the
queue's host and port to the test's Redis, the metrics port to a free one on loopback, and the
image's entrypoint ``batchml`` to this Python's ``-m batchml``.

``rendered_redis`` runs the manifest's Redis the same way: its container's command (which
writes the ACL users from the Secret's passwords), its ConfigMap's files where the container
mounts them, only its port and listening address changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.deploy_manifests import KEDA_PASSWORD, WORKERS_PASSWORD, Obj, environment, find
from tests.support.redis_server import free_port

#: what the Secret holds in these tests: not hexadecimal, with what a shell or sed chokes on
PASSWORDS = {WORKERS_PASSWORD: "w0rk/er's & pass|word", KEDA_PASSWORD: "k3da \\1 pass"}


@dataclass
class Cluster:
    """What the cluster would provide: paths, the queue's address, the Secret's value."""

    paths: dict[str, Path]  # in-cluster path -> local folder
    redis_host: str
    redis_port: int
    secrets: dict[tuple[str, str], str]  # (Secret name, key) -> value
    pod_name: str = "batchml-pod-0"
    extra_env: dict[str, str] = field(default_factory=dict)

    def localize(self, text: str) -> str:
        """``text`` with every in-cluster path prefix replaced by its local folder."""
        longest_first = sorted(self.paths, key=len, reverse=True)
        pattern = "|".join(re.escape(inside) for inside in longest_first)
        return re.sub(rf"(?<![\w/.])({pattern})(?=/|\b|$)", lambda m: str(self.paths[m[1]]), text)

    def queue_url(self, url: str) -> str:
        """The manifest's queue URL (scheme, user, db, queue name kept) pointing at the test's
        Redis."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}{self.redis_host}:{self.redis_port}").geturl()

    def env(self, objs: list[Obj], container: Obj) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
        for name, var in environment(objs, container).items():
            if var.secret is not None:
                env[name] = self.secrets[var.secret]
            elif var.field == "metadata.name":
                env[name] = self.pod_name
            elif var.field is not None:
                raise AssertionError(f"{name}: no local value for fieldRef {var.field}")
            else:
                env[name] = self.localize(var.value or "")
        if "BATCHML_QUEUE" in env:
            env["BATCHML_QUEUE"] = self.queue_url(env["BATCHML_QUEUE"])
        if "BATCHML_METRICS_PORT" in env:
            env["BATCHML_METRICS_PORT"] = str(free_port())
        if "BATCHML_METRICS_ADDRESS" in env:  # a pod's 0.0.0.0 is its own; here, loopback
            env["BATCHML_METRICS_ADDRESS"] = "127.0.0.1"
        env.update(self.extra_env)
        return env

    def argv(self, container: Obj) -> list[str]:
        """command + args; without a command, the image's ENTRYPOINT (``batchml``) runs here
        as ``python -m batchml``."""
        words = [
            self.localize(w) for w in [*container.get("command", []), *container.get("args", [])]
        ]
        if container.get("command"):
            return words
        # The local interpreter's path is not in-cluster: never localized (a clone under /tmp
        # would otherwise have its /tmp mapped to the test's folder).
        return [sys.executable, "-m", "batchml", *words]

    def start(self, objs: list[Obj], container: Obj, **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self.argv(container),
            env=self.env(objs, container),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )

    def run(self, objs: list[Obj], container: Obj, timeout: float = 60) -> tuple[int, str]:
        """Run to completion: (exit code, output)."""
        process = self.start(objs, container)
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out


@contextmanager
def rendered_redis(
    objs: list[Obj], folder: Path, secrets: dict[tuple[str, str], str]
) -> Iterator[tuple[Cluster, subprocess.Popen[bytes]]]:
    """The rendered StatefulSet ``redis`` running here until the block ends: each of its volumes
    a folder under ``folder``, its config volume holding the ConfigMap's files, its command and
    environment the manifest's. Yields the Cluster (``redis_port``: where it listens, on
    127.0.0.1 only) and the server's process, once it answers the ACL user batchml."""
    spec = find(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    cluster = Cluster(
        paths={path: folder / name for name, path in mounts.items()},
        redis_host="127.0.0.1",
        redis_port=free_port(),
        secrets=secrets,
    )
    for local in cluster.paths.values():
        local.mkdir(parents=True)
    (config,) = [v for v in spec["volumes"] if "configMap" in v]
    files = find(objs, "ConfigMap", config["configMap"]["name"])["data"]
    for name, source in files.items():  # as the kubelet projects a ConfigMap: one file per key
        text = cluster.localize(source)
        if name == "redis.conf":
            text = text.replace("port 6379", f"port {cluster.redis_port}")  # a free port here
            text = text.replace("bind * -::*", "bind 127.0.0.1")  # listen on loopback only
        (cluster.paths[mounts[config["name"]]] / name).write_text(text)
    server = subprocess.Popen(
        cluster.argv(container),
        env=cluster.env(objs, container),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        client = redis.Redis(  # each ping once: this loop is the retry
            port=cluster.redis_port,
            username="batchml",
            password=secrets[WORKERS_PASSWORD],
            retry=Retry(NoBackoff(), 0),
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    _, err = server.communicate(timeout=10)
                    raise AssertionError(f"rendered Redis did not start:\n{err.decode()}") from None
                time.sleep(0.05)
        client.close()
        yield cluster, server
    finally:
        server.terminate()
        server.wait(timeout=10)

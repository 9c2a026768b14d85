"""Run a rendered container's command here, as the kubelet would run it in the cluster.

The command and arguments are the manifest's; the environment is the one Kubernetes would give
(ConfigMaps, Secret references, the downward API). Only what must differ on this machine is
mapped: the shared volume's mount path (and every other in-cluster path) to local folders, the
queue's host and port to the test's Redis, the metrics port to a free one, and the image's
entrypoint ``batchml`` to this Python's ``-m batchml``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.deploy_manifests import Obj, environment
from tests.redis_server import free_port


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
        """The manifest's queue URL (scheme, db, queue name kept) pointing at the test's Redis."""
        parts = urlsplit(url)
        return parts._replace(netloc=f"{self.redis_host}:{self.redis_port}").geturl()

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

"""Hosts on a private network, for fault tests across real network stacks.

A :class:`Net` is a hub namespace holding a bridge (10.77.0.1/24) and a ``redis-server`` bound
to the bridge and the hub's loopback. Each :class:`Host` is a namespace of its own joined to the
bridge by a veth pair; its worker processes run inside it (``ip netns exec``) and reach Redis
only across that link, directly (``redis_url``) or through a :class:`TcpProxy` in the hub
(``proxied_url``), whose faults are delay ± jitter, dropped connections and black holes. The
test itself reads the queue through a control proxy on its own loopback that is never faulted.

Faults of a host's link: ``partition()`` / ``heal()`` set the hub's end of its veth down / up
(no carrier: packets vanish, nothing is reset); ``blackhole()`` / ``heal()`` add / remove nft
DROP rules in the host (or, without nft, black-hole its proxy). Everything is removed by
``Net.close()``, which a fixture calls even when the test fails.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from batchml.settings import Settings
from batchml.worker.local import worker_command
from tests.netfaults.netns import TAG, add_netns, del_netns, exec_argv, has_nft, ip, nft
from tests.netfaults.proxy import TcpProxy
from tests.support.cli import batchml_env
from tests.support.redis_server import free_port, redis_server_binary

__all__ = ["Host", "Net", "TcpProxy"]

HUB_IP = "10.77.0.1"
REDIS_PORT = 6379
_DROP = """table inet batchml_fault {{
  chain out {{ type filter hook output priority 0; ip daddr {peer} drop; }}
  chain in {{ type filter hook input priority 0; ip saddr {peer} drop; }}
}}
"""


class Host:
    """One machine: a namespace with one link to the hub."""

    def __init__(self, net: Net, index: int) -> None:
        self.net, self.index = net, index
        self.name = f"{TAG}h{index}"
        self.ip = f"10.77.0.{10 + index}"
        self.hub_end = f"v{index}"
        self.proxy: TcpProxy | None = None
        self._dropping = False
        add_netns(self.name)
        ip("link", "add", "eth0", "netns", self.name, "type", "veth",
           "peer", "name", self.hub_end, "netns", net.hub)  # fmt: skip
        ip("-n", net.hub, "link", "set", self.hub_end, "master", "br0", "up")
        ip("-n", self.name, "addr", "add", f"{self.ip}/24", "dev", "eth0")
        ip("-n", self.name, "link", "set", "eth0", "up")

    @property
    def redis_url(self) -> str:
        return f"redis://{HUB_IP}:{REDIS_PORT}/0"

    def proxied_url(self) -> str:
        """A Redis URL through this host's own proxy in the hub (made on first use)."""
        if self.proxy is None:
            self.proxy = TcpProxy(
                (self.net.hub, HUB_IP, 7000 + self.index), (self.net.hub, "127.0.0.1", REDIS_PORT),
                seed=self.index,
            )  # fmt: skip
        return f"redis://{HUB_IP}:{self.proxy.port}/0"

    def partition(self) -> None:
        ip("-n", self.net.hub, "link", "set", self.hub_end, "down")

    def blackhole(self) -> str:
        """Drop every packet between this host and the hub; how it was done (nft or proxy)."""
        if has_nft():
            nft(self.name, _DROP.format(peer=HUB_IP))
            self._dropping = True
            return "nft"
        if self.proxy is None:
            raise RuntimeError(f"{self.name}: no nft here, and this host's link has no proxy")
        self.proxy.blackhole()
        return "proxy"

    def heal(self) -> None:
        ip("-n", self.net.hub, "link", "set", self.hub_end, "up")
        if self._dropping:
            nft(self.name, "delete table inet batchml_fault\n")
            self._dropping = False
        if self.proxy is not None:
            self.proxy.heal()

    def argv(self, argv: Sequence[str]) -> list[str]:
        return exec_argv(self.name, list(argv))

    def spawn_worker(
        self, settings: Settings, log: Path, extra: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """``batchml worker`` (the repo's python, ``-m batchml``) inside this host."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.argv(worker_command(settings, extra)), stdout=out, stderr=subprocess.STDOUT,
                env=batchml_env(),
            )  # fmt: skip
        self.net.procs.append(proc)
        return proc

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        del_netns(self.name)


class Net:
    """The hub (bridge + Redis) and the hosts joined to it; ``close()`` removes all of it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hub = f"{TAG}hub"
        self.hosts: list[Host] = []
        self.extra: list[str] = []  # more namespaces to remove (a storage host, say)
        self.redis: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []  # every worker started in a host
        self.control: TcpProxy | None = None
        add_netns(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "addr", "add", f"{HUB_IP}/24", "dev", "br0")
        ip("-n", self.hub, "link", "set", "br0", "up")

    def add_host(self) -> Host:
        host = Host(self, len(self.hosts))
        self.hosts.append(host)
        return host

    def start_redis(self) -> str:
        """Start redis-server in the hub; the URL the test itself uses (the control proxy)."""
        folder = self.folder / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(), "--port", str(REDIS_PORT), "--bind", HUB_IP, "127.0.0.1",
            "--dir", str(folder), "--appendonly", "no", "--save", "", "--protected-mode", "no",
            "--daemonize", "no", "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip
        self.redis = subprocess.Popen(exec_argv(self.hub, command), stdout=subprocess.DEVNULL)
        self.control = TcpProxy(
            (None, "127.0.0.1", free_port()), (self.hub, "127.0.0.1", REDIS_PORT)
        )
        url = f"redis://127.0.0.1:{self.control.port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                client.close()
                return url
            except redis.RedisError:
                if self.redis.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start in {self.hub}") from None
                time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:  # a failed test leaves none running
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for host in self.hosts:
            host.close()
        if self.control is not None:
            self.control.close()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(10)
        for name in self.extra:
            del_netns(name)
        del_netns(self.hub)


def ensure_tools(*names: str) -> list[str]:
    """The names among ``names`` that are not on the PATH."""
    return [n for n in names if shutil.which(n) is None]

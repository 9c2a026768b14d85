"""Network namespaces for the fault tests: made, entered and removed with ``ip netns``.

Every name carries the session's tag (``TAG``), so parallel test sessions never collide, and
every address lives only inside namespaces this session made (10.77.0.0/24 on a bridge in the
hub namespace): no packet of these tests leaves them, none reaches the machine's own network.
A socket for the test process itself is made inside a namespace by :func:`socket_in` (a short
thread that calls setns(2) and makes the socket: a socket keeps its namespace for life).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import uuid

from tests.support.ci import unavailable

#: this session's tag in every namespace name
TAG = f"bm{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; raises with ip's own message when ``check`` and it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def require_netns() -> None:
    """Namespaces can be made here (root, iproute2): else fail in CI, skip elsewhere."""
    if shutil.which("ip") is None:
        unavailable("`ip` (iproute2) is not installed: the network fault tests need it")
    if os.geteuid() != 0:
        unavailable("the network fault tests make network namespaces: run them as root")
    probe = f"{TAG}probe"
    done = ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        unavailable(f"cannot make a network namespace here: {done.stderr.strip()}")
    ip("netns", "del", probe, check=False)


def add_netns(name: str) -> None:
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def del_netns(name: str) -> None:
    """Remove a namespace (its veths go with it); absent already is fine."""
    ip("netns", "del", name, check=False)


def exec_argv(netns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the namespace ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def socket_in(netns: str | None, family: int = socket.AF_INET) -> socket.socket:
    """A new TCP socket inside the namespace ``netns`` (None: the test's own namespace)."""
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns}")
            finally:
                os.close(fd)
            made.append(socket.socket(family, socket.SOCK_STREAM))
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=make)  # setns changes only this short-lived thread
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def has_nft() -> bool:
    return shutil.which("nft") is not None


def nft(netns: str, script: str) -> None:
    """Load an nft ``script`` in ``netns``."""
    done = subprocess.run(
        exec_argv(netns, ["nft", "-f", "-"]), input=script, capture_output=True, text=True,
        timeout=20, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"nft in {netns}: {done.stderr.strip()}")

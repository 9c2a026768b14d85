"""Shared storage over a real network file system: sshfs to an sshd in a storage host.

The storage host is a :class:`~tests.netfaults.harness.Host` running ``sshd`` (keys made for the
test, root login by key only, ``internal-sftp``); the folder it exports is mounted with sshfs in
the test's own mount namespace (so every worker process, started afterwards, sees it), while
ssh itself runs inside a client host, so the file system's traffic crosses that host's link.
``freeze()`` SIGSTOPs every process of the storage host (the mount hangs: each request waits,
nothing is refused); ``thaw()`` resumes them. ``close()`` thaws, unmounts and stops it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.netfaults.harness import Host, ensure_tools
from tests.netfaults.netns import ip
from tests.support.ci import unavailable


def require_sshfs() -> None:
    missing = ensure_tools("sshfs", "sshd", "ssh", "ssh-keygen", "fusermount3")
    if missing or not Path("/dev/fuse").exists():
        unavailable(
            f"sshfs tests need {', '.join(missing) or '/dev/fuse'}: install Debian's sshfs and "
            "openssh-server (`make system-deps` does in CI)"
        )


class SshfsMount:
    def __init__(self, folder: Path, server: Host, client: Host) -> None:
        self.folder, self.server, self.client = folder, server, client
        self.export = folder / "export"
        self.mountpoint = folder / "mnt"
        self.export.mkdir(parents=True)
        self.mountpoint.mkdir()
        self.sshd: subprocess.Popen[bytes] | None = None
        self.mounted = False
        keys = folder / "keys"
        keys.mkdir()
        for name in ("host", "client"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                check=True, timeout=30,
            )  # fmt: skip
        (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
        config = folder / "sshd_config"
        config.write_text(
            f"ListenAddress {server.ip}\nPort 22\nHostKey {keys / 'host'}\n"
            f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        log = open(folder / "sshd.log", "ab")  # noqa: SIM115 - the child's
        self.sshd = subprocess.Popen(
            server.argv(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        ssh = f"ip netns exec {client.name} ssh"
        options = ",".join([
            f"ssh_command={ssh}", f"IdentityFile={keys / 'client'}", "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR",
        ])  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            done = subprocess.run(
                ["sshfs", f"root@{server.ip}:{self.export}", str(self.mountpoint), "-o", options],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                self.mounted = True
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshfs did not mount: {done.stderr.strip()}")
            time.sleep(0.2)  # sshd is still starting

    def _pids(self) -> list[int]:
        out = ip("netns", "pids", self.server.name, check=False).stdout
        return [int(p) for p in out.split()]

    def freeze(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        if self.mounted:
            unmount = ["fusermount3", "-u", "-z", str(self.mountpoint)]
            subprocess.run(unmount, timeout=30, check=False)
            self.mounted = False
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(10)

"""Shared storage on a real network file system (sshfs to an sshd in a storage host), and the
SQLite queue's refusal of every network file-system type."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.errors import ConfigError
from batchml.queue import open_queue
from batchml.queue.sqlite.queue import SqliteQueue
from tests.netfaults import checks
from tests.netfaults.harness import Net
from tests.netfaults.sshfs import SshfsMount, require_sshfs

NETWORK_TYPES = ["nfs", "nfs4", "cifs", "smb3", "fuse.gcsfuse", "fuse.sshfs", "9p", "ceph",
                 "fuse.ceph-fuse", "glusterfs", "fuse.glusterfs", "lustre", "virtiofs"]  # fmt: skip


@pytest.mark.parametrize("fs_type", NETWORK_TYPES)
def test_sqlite_queue_is_refused_on_each_network_fs_type(
    fs_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a /proc/mounts where the queue's folder is a mount of ``fs_type``, opening a
    SQLite queue there is refused with a line naming the type (nothing is created)."""
    folder = tmp_path / "shared"
    mounts = f"/dev/sda1 / ext4 rw 0 0\nserver:/x {folder} {fs_type} rw 0 0\n"
    real = Path.read_text
    monkeypatch.setattr(
        Path, "read_text",
        lambda self, *a, **k: mounts if str(self) == "/proc/mounts" else real(self, *a, **k),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=f"network file system \\({fs_type}\\)"):
        SqliteQueue(folder / "queue.db")
    assert not folder.exists()


@pytest.fixture
def sshfs(net: Net, tmp_path: Path) -> Iterator[SshfsMount]:
    """An sshfs mount of a storage host's folder, ssh running in a client host (net.hosts[1])."""
    require_sshfs()
    server, client = net.add_host(), net.add_host()
    mount = SshfsMount(tmp_path / "fs", server, client)
    try:
        yield mount
    finally:
        mount.close()


def test_sqlite_queue_is_refused_on_a_real_sshfs_mount(sshfs: SshfsMount) -> None:
    with pytest.raises(ConfigError, match=r"network file system \(fuse\.sshfs\)"):
        SqliteQueue(sshfs.mountpoint / "queue.db")
    assert not (sshfs.export / "queue.db").exists()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(120)
def test_hung_network_storage_mid_task_the_item_is_given_up_within_its_lease(
    net: Net, sshfs: SshfsMount, tmp_path: Path
) -> None:
    """Given a worker whose storage root is the sshfs mount, when the storage host freezes
    mid-task (every write then blocks in the kernel), then its lease expires within lease_ttl
    (and a bit) instead of being renewed for ever; thawed, the attempt publishes nothing, a
    second worker commits the item, and nothing half-written was ever visible."""
    control = net.start_redis()
    client = net.hosts[1]
    queue = open_queue(f"{control}?name=q")
    root, attempts = sshfs.mountpoint / "root", tmp_path / "attempts"
    ids = checks.push_items(queue, attempts, 1, seconds=4)
    settings = checks.settings(root, f"{client.redis_url}?name=q")
    a = client.spawn_worker(settings, tmp_path / "a.log", ["--lease-ttl", "3", "--poll", "0.1"])
    checks.wait_for(lambda: any(attempts.iterdir()), 60, "the worker to start the item")
    time.sleep(0.5)
    sshfs.freeze()
    frozen = time.monotonic()
    try:
        # the lease is not renewed: its deadline passes (reclaimed at the next lease() of any
        # worker); the old heartbeat renewed it for as long as the mount hung
        checks.wait_for(
            lambda: (queue.get("i00").deadline or 0) < time.time(),
            3 + 15,
            "the lease to be given up",
        )
        given_up = time.monotonic() - frozen
        assert not (sshfs.export / "root/runs/default/out/i00.txt").exists()
    finally:
        sshfs.thaw()
    b = client.spawn_worker(settings, tmp_path / "b.log", ["--lease-ttl", "10", "--poll", "0.1"])
    assert checks.exit_codes([a, b], 60) == [exitcodes.OK, exitcodes.OK]
    figures = checks.assert_exactly_once(queue, root, attempts, ids)
    print(f"\ncase 5 (sshfs storage frozen; lease given up after {given_up:.1f}s): {figures}")

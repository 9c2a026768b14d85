"""Where a SQLite queue file may live: its URL, and the refusal of network file systems.

SQLite's locking is unsafe on NFS/CIFS (and FUSE object stores): a queue file there is refused
(docs/design.md); ``redis://`` is the queue to share between machines.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchml.errors import ConfigError


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` -> Path."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite queue URL: {url!r} (expected sqlite:///path/to/queue.db)")
    rest = url[len("sqlite:///") :]
    if not rest:
        raise ConfigError(f"SQLite queue URL {url!r} names no file")
    return Path(rest.split("?", 1)[0])


def on_network_fs(path: Path) -> str | None:
    """The file-system type if ``path`` is on a network file system (NFS, CIFS, sshfs, 9p,
    Ceph, GlusterFS, Lustre, virtiofs...), where SQLite locking is unsafe."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) <= len(best):
            continue
        if real == fields[1] or real.startswith(fields[1].rstrip("/") + "/"):
            best, best_type = fields[1], fields[2]
    return best_type if best_type.startswith(NETWORK_FS) else None


#: mount types (``/proc/mounts``) of network and cluster file systems
NETWORK_FS = ("nfs", "cifs", "smb", "fuse.gcsfuse", "fuse.sshfs", "9p", "ceph", "fuse.ceph",
              "glusterfs", "fuse.glusterfs", "lustre", "virtiofs")  # fmt: skip

"""Whether the storage root still answers, asked without ever blocking the one who asks.

A network file system that hangs (an NFS server gone, an sshfs peer frozen, a FUSE daemon
stuck) blocks every call on it in the kernel, possibly for ever: the task's own writes, and any
check made the same way. The heartbeat must not renew the lease of a task stuck like that: the
lease would never expire, and no other worker could take the item while the storage hangs. So
the heartbeat asks :meth:`StorageProbe.answers`, which runs ``statvfs`` on the root in a thread
of its own and waits at most ``timeout`` seconds for it; a probe still blocked from an earlier
call counts as "no answer" at once, and no second one is started beside it.

``statvfs`` goes to the file system's server (FUSE forwards every statfs to its daemon, NFS to
its server), where a ``stat`` could be answered from the kernel's attribute cache.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class StorageProbe:
    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._error: OSError | None = None

    def _probe(self) -> None:
        try:
            os.statvfs(self.root)
        except OSError as exc:  # ENOTCONN, EIO, ESTALE...: the storage is not usable either
            self._error = exc

    def answers(self) -> bool:
        """True if the root answered a ``statvfs`` within ``timeout`` seconds."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._error = None
                thread = threading.Thread(target=self._probe, name="storage-probe", daemon=True)
                self._thread, self._started = thread, time.monotonic()
                thread.start()
            left = self._started + self.timeout - time.monotonic()
        if left > 0:
            thread.join(left)
        return not thread.is_alive() and self._error is None

    def blocked_for(self) -> float:
        """Seconds the probe in flight has been waiting (0 when none is)."""
        thread = self._thread
        return time.monotonic() - self._started if thread and thread.is_alive() else 0.0

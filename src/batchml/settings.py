"""One settings object: CLI flags, then ``BATCHML_*`` environment variables, then defaults.

The CLI (Typer) resolves flags and environment variables; this module holds the defaults and
derives what follows from them (the SQLite queue under the storage root when no queue is given).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from batchml.errors import ConfigError
from batchml.publish_modes import StorageMode
from batchml.queue import ConnectOptions
from batchml.queue.base import MAX_BATCH, QueueOptions, RetryPolicy
from batchml.storage import Storage

DEFAULT_ROOT = "./batchml-data"
DEFAULT_RUN = "default"


#: the longest run name accepted (its folder name is at most 200 characters, see safe_name)
MAX_RUN_NAME = 128


def check_run_name(run: str) -> None:
    """Refuse a run name that is empty, too long, or holds a '/' or a control character.

    Anything else is fine, ``exp:1`` and ``exp_1`` alike: the run's folder name comes from
    :func:`batchml.storage.safe_name`, which keeps every two names apart."""
    bad = [c for c in run if c == "/" or unicodedata.category(c) == "Cc"]
    if not run or len(run) > MAX_RUN_NAME or bad:
        shown = run if len(run) <= 40 else run[:40] + "…"
        raise ConfigError(
            f"--run {shown!r}: a run name is 1-{MAX_RUN_NAME} characters with no '/' and no "
            "control characters, e.g. 'default', 'exp-2' or 'exp:1'"
        )


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker holds its leases and reacts to signals."""

    lease_ttl: float = 60.0  # seconds a lease lasts without a heartbeat
    heartbeat_every: float | None = None  # default: a third of the TTL
    poll_interval: float = 0.5  # sleep when nothing is ready but the queue is not drained
    grace: float = 20.0  # after SIGTERM, time to finish the current item before releasing it
    max_items: int | None = None  # stop after this many items (tests, debugging)
    queue_retry: float = 120.0  # keep retrying an unreachable queue this long, then exit 69
    prefetch: int = 1  # leases held at once; > 1 leases and commits in batches of that many

    def __post_init__(self) -> None:
        if not 1 <= self.prefetch <= MAX_BATCH:
            raise ConfigError(f"--prefetch must be 1 to {MAX_BATCH}, got {self.prefetch}")
        if self.lease_ttl <= 0:
            raise ConfigError(f"--lease-ttl must be positive, got {self.lease_ttl}")
        if self.grace < 0:
            raise ConfigError(f"--grace must be zero or positive, got {self.grace}")
        if self.queue_retry < 0:
            raise ConfigError(f"--queue-retry must be zero or positive, got {self.queue_retry}")

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_every if self.heartbeat_every else self.lease_ttl / 3.0


@dataclass(frozen=True)
class Settings:
    root: Path = Path(DEFAULT_ROOT)
    queue_url: str | None = None
    run: str = DEFAULT_RUN
    max_attempts: int = 3
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    redis_password: str | None = field(default=None, repr=False)  # never shown nor logged
    redis_ca_file: Path | None = None
    tasks: tuple[str, ...] = ()  # modules whose @batchml.task functions workers may run
    storage_mode: StorageMode = StorageMode.RENAME  # write-once on a Cloud Storage FUSE bucket

    def __post_init__(self) -> None:
        check_run_name(self.run)
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1, got {self.max_attempts}")

    @property
    def resolved_queue_url(self) -> str:
        """The queue URL; by default a SQLite file under the storage root."""
        if self.queue_url:
            return self.queue_url
        return f"sqlite:///{Path(os.path.abspath(self.root)) / 'queue.db'}"

    def storage(self) -> Storage:
        return Storage(self.root, self.storage_mode)

    def queue_options(self) -> QueueOptions:
        return QueueOptions(retry=RetryPolicy(max_attempts=self.max_attempts))

    def connect_options(self, timeout: float | None = None) -> ConnectOptions:
        """How to reach a Redis queue; ``timeout`` shortens both connect and reply timeouts."""
        options = ConnectOptions(password=self.redis_password, ca_file=self.redis_ca_file)
        if timeout is not None:
            options = replace(options, connect_timeout=timeout, socket_timeout=timeout)
        return options

    def with_worker(self, **changes: object) -> Settings:
        return replace(self, worker=replace(self.worker, **changes))  # type: ignore[arg-type]

"""Running N worker processes on this machine (the demo, tests and benchmarks use it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from batchml.queue.base import State, WorkQueue
from batchml.settings import Settings


def worker_command(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one worker process for these settings."""
    return [
        sys.executable, "-m", "batchml",
        "--root", str(settings.root),
        "--queue", settings.resolved_queue_url,
        "--run", settings.run,
        "--max-attempts", str(settings.max_attempts),
        "--storage-mode", settings.storage_mode.value,
        *(("--tasks", ",".join(settings.tasks)) if settings.tasks else ()),
        "worker", *extra,
    ]  # fmt: skip


def worker_environment(settings: Settings) -> dict[str, str]:
    """The children's environment: ours, plus the Redis secrets (never put on a command line,
    where ``ps`` would show them)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if settings.redis_password is not None:
        env["BATCHML_REDIS_PASSWORD"] = settings.redis_password
    if settings.redis_ca_file is not None:
        env["BATCHML_REDIS_CA_FILE"] = str(settings.redis_ca_file)
    return env


def spawn_workers(
    settings: Settings, n: int, log_dir: Path, extra: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` worker processes; each logs to ``log_dir/worker-<k>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for k in range(n):
        log = open(log_dir / f"worker-{k}.log", "ab")  # noqa: SIM115 - owned by the child
        procs.append(
            subprocess.Popen(
                worker_command(settings, extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=worker_environment(settings),
            )
        )
        log.close()
    return procs


def wait(
    queue: WorkQueue,
    procs: Sequence[subprocess.Popen[bytes]],
    on_progress: Callable[[dict[State, int]], None] | None = None,
    poll: float = 0.25,
) -> list[int]:
    """Wait for every worker to exit, reporting queue counts meanwhile; their exit codes."""
    while any(p.poll() is None for p in procs):
        if on_progress is not None:
            on_progress(queue.counts())
        time.sleep(poll)
    if on_progress is not None:
        on_progress(queue.counts())
    return [int(p.returncode) for p in procs]

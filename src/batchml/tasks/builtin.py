"""Small built-in tasks for smoke tests, benchmarks and probes (``noop``, ``sleep``).

Registered, like every built-in, as ``batchml.tasks`` entry points in ``pyproject.toml``."""

from __future__ import annotations

import time
from typing import Any

from batchml.tasks.context import TaskContext
from batchml.tasks.registry import task


@task
def noop(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Do nothing; measures the queue's own overhead."""
    return {}


@task
def sleep(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``payload['seconds']`` in small steps, abandoning early if the lease is lost."""
    end = time.monotonic() + float(payload.get("seconds", 1.0))
    while (left := end - time.monotonic()) > 0:
        ctx.check()
        time.sleep(min(left, 0.05))
    if payload.get("fail"):
        raise RuntimeError(str(payload["fail"]))
    return {"slept": payload.get("seconds", 1.0)}

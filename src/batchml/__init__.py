"""batchml: fault-tolerant batch machine-learning workloads.

A work queue (embedded SQLite, or Redis for several machines) hands out datasets to
workers that may be killed at any moment; each item's effect lands exactly once.

``@batchml.task`` marks a function a worker may run (see :mod:`batchml.tasks.registry`); it is
imported on first use, so ``import batchml.errors`` alone stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchml.tasks.registry import task

__version__ = "0.1.0"
__all__ = ["__version__", "task"]


def __getattr__(name: str) -> Any:
    if name == "task":
        from batchml.tasks.registry import task

        return task
    raise AttributeError(f"module 'batchml' has no attribute {name!r}")

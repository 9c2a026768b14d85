"""batchml: fault-tolerant batch machine-learning workloads.

A work queue (embedded SQLite, or Redis for several machines) hands out datasets to
workers that may be killed at any moment; each item's effect lands exactly once.

``@batchml.task`` marks a function a worker may run (see :mod:`batchml.tasks.registry`).
"""

__version__ = "0.1.0"

from batchml.tasks.registry import task

__all__ = ["__version__", "task"]

"""Tasks: what a worker runs for an item, looked up by the name in the item's payload.

A task is a plain function ``task(ctx: TaskContext, payload: dict) -> dict | None``; see
:mod:`batchml.tasks.context` for what the context offers and the rules a task follows.
"""

from batchml.tasks.context import TaskContext
from batchml.tasks.registry import Task, builtin_names, resolve

__all__ = ["Task", "TaskContext", "builtin_names", "resolve"]

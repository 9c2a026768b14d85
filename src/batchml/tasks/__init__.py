"""Tasks: what a worker runs for an item, looked up by the name in the item's payload.

A task is a plain function ``task(ctx: TaskContext, payload: dict) -> dict | None``; see
:mod:`batchml.tasks.context` for what the context offers and the rules a task follows, and
:mod:`batchml.tasks.registry` for the allow-list that decides which tasks a worker runs.
"""

from batchml.tasks.context import TaskContext
from batchml.tasks.registry import ENTRY_POINT_GROUP, Task, TaskRegistry, Validator, task

__all__ = ["ENTRY_POINT_GROUP", "Task", "TaskContext", "TaskRegistry", "Validator", "task"]

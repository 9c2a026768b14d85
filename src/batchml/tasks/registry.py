"""Task lookup: built-in names, or a user's ``package.module:function``.

Built-ins are imported lazily, so a worker that runs only user tasks never imports scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from batchml.errors import UnknownTask
from batchml.tasks.context import TaskContext

Task = Callable[[TaskContext, dict[str, Any]], "dict[str, Any] | None"]

_BUILTINS: dict[str, str] = {
    "fraud.features": "batchml.fraud.tasks:features_task",
    "fraud.train": "batchml.fraud.tasks:train_task",
    "fraud.score": "batchml.fraud.tasks:score_task",
    "noop": "batchml.tasks.builtin:noop",
    "sleep": "batchml.tasks.builtin:sleep",
}


def builtin_names() -> list[str]:
    return sorted(_BUILTINS)


def resolve(name: str) -> Task:
    """Return the task function registered as ``name`` or importable as ``module:function``."""
    target = _BUILTINS.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UnknownTask(
            f"unknown task {name!r}: use a built-in ({', '.join(builtin_names())}) "
            "or 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownTask(f"task {name!r}: cannot import module {module_name!r} ({exc})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise UnknownTask(f"task {name!r}: module {module_name!r} has no function {attr!r}")
    return func  # type: ignore[no-any-return]

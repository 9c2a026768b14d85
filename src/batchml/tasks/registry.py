"""The task allow-list: the only functions a worker runs for a queue item.

Whoever can write to the queue names an item's task, so a worker never imports or calls a name
it was not given by its operator. It runs only:

* tasks of installed packages, registered in the entry-point group ``batchml.tasks`` (the
  entry point's name is the task's name, its value ``module:function``). The built-ins
  (``fraud.features``, ``fraud.train``, ``fraud.score``, ``noop``, ``sleep``) are registered
  there by batchml's own ``pyproject.toml``; they are imported when first run, so a worker
  that runs only user tasks never imports scikit-learn;
* in each module the operator names with ``--tasks`` / ``BATCHML_TASKS``, the functions
  decorated with :func:`task` and defined in that module (not imported into it), each named
  ``module:function``. A module that uses no ``@task`` offers nothing, and naming it is a
  configuration error: ``--tasks subprocess`` makes nothing of ``subprocess`` runnable.

Any other name (a standard-library function included) is refused: at ``queue add`` with exit
78, and by a worker that leases such an item (written straight into the queue) with an
:class:`~batchml.errors.UnknownTask`, which is permanent: the item is dead at once.

A task may declare a payload validator, ``@task(validate=check)`` with
``check(payload, storage)`` raising :class:`~batchml.errors.PayloadError` (or another
permanent error, such as the PathEscapeError of ``storage.resolve``; a KeyError, TypeError,
ValueError, AttributeError or IndexError it raises is reported as a PayloadError). It runs at
``queue add`` and again in the worker before the task, so a bad payload is refused, or dead on
its first attempt, instead of retried.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar, overload

from batchml.errors import ConfigError, PayloadError, UnknownTask
from batchml.storage import Storage
from batchml.tasks.context import TaskContext

Task = Callable[[TaskContext, dict[str, Any]], "dict[str, Any] | None"]
Validator = Callable[[dict[str, Any], Storage], None]
F = TypeVar("F", bound=Callable[..., Any])

#: the entry-point group installed packages register their tasks in
ENTRY_POINT_GROUP = "batchml.tasks"
_MARK = "__batchml_task__"
#: what a validator raises on a payload of the wrong shape; reported as a PayloadError
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass(frozen=True)
class TaskMark:
    """What :func:`task` records on a function."""

    validate: Validator | None = None


@overload
def task(func: F, /) -> F: ...
@overload
def task(*, validate: Validator | None = None) -> Callable[[F], F]: ...
def task(func: F | None = None, /, *, validate: Validator | None = None) -> F | Callable[[F], F]:
    """Mark ``func`` as a task a worker may run when its module is named with ``--tasks``.

    ``@task`` or ``@task(validate=check)``; the function itself is returned unchanged."""

    def mark(f: F) -> F:
        if not callable(f):
            raise TypeError(f"@batchml.task decorates a function, not {f!r}")
        setattr(f, _MARK, TaskMark(validate))
        return f

    return mark if func is None else mark(func)


def parse_modules(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--tasks`` values (repeatable, each comma-separated) as a tuple of module names."""
    names = (part.strip() for value in values or () for part in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass
class _Entry:
    source: str  # where it was registered, for error messages
    target: str  # module:function
    load: Callable[[], Any]
    _loaded: tuple[Task, Validator | None] | None = field(default=None, repr=False)

    def resolve(self, name: str) -> tuple[Task, Validator | None]:
        if self._loaded is None:
            try:
                func = self.load()
            except Exception as exc:
                raise ConfigError(
                    f"task {name!r} ({self.source}): cannot load {self.target} "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            if not callable(func):
                raise ConfigError(f"task {name!r} ({self.source}): {self.target} is not callable")
            mark = getattr(func, _MARK, None)
            self._loaded = (func, mark.validate if isinstance(mark, TaskMark) else None)
        return self._loaded


def _returning(func: Task) -> Callable[[], Task]:
    return lambda: func


def _entry_point_entries(points: Iterable[EntryPoint]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for ep in points:
        dist = ep.dist.name if ep.dist is not None else "an unnamed distribution"
        source = f"entry point of {dist}"
        known = entries.get(ep.name)
        if known is not None and known.target != ep.value:
            raise ConfigError(
                f"task {ep.name!r} is registered twice in the {ENTRY_POINT_GROUP!r} entry points, "
                f"as {known.target} ({known.source}) and {ep.value} ({source}); uninstall one"
            )
        entries[ep.name] = _Entry(source, ep.value, ep.load)
    return entries


def module_tasks(module_name: str) -> dict[str, Task]:
    """The ``@task`` functions defined in ``module_name``, named ``module:function``.

    A module that cannot be imported, or defines no ``@task`` function, is a ConfigError."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        hint = "; is its package installed, or on PYTHONPATH?" * isinstance(exc, ImportError)
        raise ConfigError(
            f"--tasks {module_name}: cannot import it ({type(exc).__name__}: {exc}){hint}"
        ) from None
    found: dict[str, Task] = {}
    for attr, obj in vars(module).items():
        if (
            inspect.isfunction(obj)
            and obj.__module__ == module.__name__
            and isinstance(getattr(obj, _MARK, None), TaskMark)
        ):
            found[f"{module.__name__}:{attr}"] = obj
    if not found:
        raise ConfigError(
            f"--tasks {module_name}: the module defines no task; decorate its task functions "
            "with @batchml.task (a module that does not is never run by a worker)"
        )
    return found


class TaskRegistry:
    """The tasks a worker may run, by name; nothing outside it is imported or called."""

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self._entries = entries

    @classmethod
    def load(
        cls, modules: Sequence[str] = (), points: Iterable[EntryPoint] | None = None
    ) -> TaskRegistry:
        """The entry-point tasks (``points``: by default the installed ``batchml.tasks``
        group), plus the ``@task`` functions of ``modules``; a conflict is a ConfigError."""
        if points is None:
            points = entry_points(group=ENTRY_POINT_GROUP)
        entries = _entry_point_entries(points)
        for module_name in modules:
            for name, func in module_tasks(module_name).items():
                if name in entries and entries[name].target != name:
                    raise ConfigError(
                        f"task {name!r} of --tasks {module_name} is also registered as "
                        f"{entries[name].target} ({entries[name].source}); rename one"
                    )
                entries[name] = _Entry(f"--tasks {module_name}", name, _returning(func))
        return cls(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> tuple[Task, Validator | None]:
        """The task registered as ``name`` and its validator, or UnknownTask (permanent)."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownTask(self._refusal(name))
        return entry.resolve(name)

    def prepare(self, payload: dict[str, Any], storage: Storage) -> Task:
        """The task an item's payload names, after its validator accepted the payload.

        Raises UnknownTask for a name outside the allow-list (nothing is imported), and the
        validator's PayloadError (or another permanent error) for a payload it refuses."""
        name = payload.get("task")
        if not isinstance(name, str) or not name:
            raise UnknownTask(f"the item's payload names no task (its 'task' is {name!r})")
        func, validate = self.get(name)
        if validate is not None:
            try:
                validate(payload, storage)
            except _SHAPE_ERRORS as exc:  # a key missing or of the wrong type: no retry helps
                raise PayloadError(
                    f"{name} payload refused by its validator: {type(exc).__name__}: {exc}"
                ) from None
        return func

    def _refusal(self, name: str) -> str:
        shown = name if len(name) <= 120 else name[:117] + "..."
        module, sep, _ = name.partition(":")
        here = f" (here --tasks {module})" if sep and module else ""
        if sep and module.split(".")[0] in sys.stdlib_module_names:
            # the standard library defines no @batchml.task: naming it in --tasks is refused too
            return (
                f"task {shown!r} is not registered, so no worker runs it: {module!r} is a "
                f"standard-library module, which no worker runs tasks from. Register a function "
                f"of your own with @batchml.task in a module named by --tasks or BATCHML_TASKS, "
                f"or as a {ENTRY_POINT_GROUP!r} entry point. Registered tasks: "
                + (", ".join(self.names()) or "none")
            )
        known = ", ".join(self.names()) or (
            f"none: no {ENTRY_POINT_GROUP!r} entry points are installed (is batchml installed?)"
        )
        return (
            f"task {shown!r} is not registered, so no worker runs it: register a function of "
            f"your own with @batchml.task in a module named by --tasks{here} or BATCHML_TASKS, "
            f"or as a {ENTRY_POINT_GROUP!r} entry point. Registered tasks: {known}"
        )

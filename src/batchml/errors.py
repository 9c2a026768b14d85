"""The project's exceptions: one root, a few subclasses a caller can act on.

Driver errors (sqlite3, redis-py, pyarrow) are translated into these at the boundary, so the
CLI can print one clear line for an expected failure instead of a traceback.
"""

from __future__ import annotations


class BatchmlError(Exception):
    """Root of every error batchml raises on purpose."""


class PermanentError(BatchmlError):
    """Retrying cannot help: an item that fails with this is dead on its first attempt.

    A base the errors below are marked with (an unknown task, a path that escapes the root, a
    configuration error, a payload that fails validation); a task may raise one, or a subclass
    of its own, to say the same of a failure it knows is permanent."""


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` says retrying cannot help (see :class:`PermanentError`)."""
    return isinstance(exc, PermanentError)


class ConfigError(PermanentError):
    """A setting, URL or option is wrong; nothing ran."""


class QueueNotFound(ConfigError):
    """The queue a URL names does not exist (no file, or no generation): nothing was created."""


class StorageError(BatchmlError):
    """A file on the storage root could not be read or written."""


class PathEscapeError(StorageError, PermanentError):
    """A path given by a user or a queue item resolves outside the storage root."""


class DatasetError(BatchmlError):
    """A dataset file is unreadable or fails validation."""


class UntrustedPickleError(DatasetError):
    """A pickle was offered without an explicit --trust-pickle."""


class QueueError(BatchmlError):
    """The work queue refused an operation."""


class QueueUnavailable(QueueError):
    """The queue backend cannot be reached (connection refused, timeout, auth)."""


class QueueCorrupt(QueueError):
    """The queue's database file is damaged: a retry cannot fix it (exit 65, DATA_LOSS)."""


class LeaseLost(QueueError):
    """The fencing token is no longer current: another worker owns the item now."""


class UnknownItem(QueueError):
    """No item with that id."""


class LineageConflict(QueueError):
    """The lineage head moved since the task read it; the step is refused."""


class DataLoss(QueueError):
    """The queue lost its data: its generation changed or vanished, or items a worker held
    vanished (a Redis restarted without persistence, or a purge while workers ran)."""


class TaskError(BatchmlError):
    """A task failed in a way worth retrying or recording."""


class UnknownTask(TaskError, PermanentError):
    """No task is registered under that name: the worker's allow-list does not hold it."""


class PayloadError(TaskError, PermanentError):
    """An item's payload fails its task's validation (a key missing or of the wrong type)."""

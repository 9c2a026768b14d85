"""The project's exceptions: one root, a few subclasses a caller can act on.

Driver errors (sqlite3, redis-py, pyarrow) are translated into these at the boundary, so the
CLI can print one clear line for an expected failure instead of a traceback.
"""

from __future__ import annotations


class BatchmlError(Exception):
    """Root of every error batchml raises on purpose."""


class ConfigError(BatchmlError):
    """A setting, URL or option is wrong; nothing ran."""


class StorageError(BatchmlError):
    """A file on the storage root could not be read or written."""


class PathEscapeError(StorageError):
    """A path given by a user or a queue item resolves outside the storage root."""


class DatasetError(BatchmlError):
    """A dataset file is unreadable or fails validation."""


class UntrustedPickleError(DatasetError):
    """A pickle was offered without an explicit --trust-pickle."""


class QueueError(BatchmlError):
    """The work queue refused an operation."""


class QueueUnavailable(QueueError):
    """The queue backend cannot be reached (connection refused, timeout, auth)."""


class QueueNotFound(ConfigError):
    """A command that only reads was pointed at a queue that does not exist (a typo, a volume
    not mounted); it is not created."""


class QueueCorrupt(QueueError):
    """The queue's database file is damaged: a retry cannot fix it (exit 65, DATA_LOSS)."""


class LeaseLost(QueueError):
    """The fencing token is no longer current: another worker owns the item now."""


class UnknownItem(QueueError):
    """No item with that id."""


class LineageConflict(QueueError):
    """The lineage head moved since the task read it; the step is refused."""


class TaskError(BatchmlError):
    """A task failed in a way worth retrying or recording."""


class UnknownTask(TaskError):
    """No task registered under that name, and it is not an importable module:function."""

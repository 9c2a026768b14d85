"""Logging set-up shared by every command: human-readable lines, or one JSON object per line.

``--log-format text`` (the default) writes ``time level logger: message`` on stderr.
``--log-format json`` writes one object per line for log pipelines (Kubernetes, Loki, ELK)::

    {"time": "2026-01-02T03:04:05.678Z", "severity": "INFO", "level": "INFO",
     "logger": "batchml.worker", "message": "committed train:default:2018-04-02 in 0.41s",
     "worker": "pod-a-1-3f9c2e", "item": "train:default:2018-04-02", "run": "default",
     "task": "fraud.train", "dataset": "2018-04-02",
     "logging.googleapis.com/labels": {"worker": "pod-a-1-3f9c2e", "run": "default",
                                       "item": "train:default:2018-04-02"}}

On GKE, Cloud Logging reads such a line from the container's stderr as a structured entry:
``severity`` (DEBUG, INFO, WARNING, ERROR or CRITICAL) is the entry's severity (Cloud Logging
does not read ``level``, kept for other pipelines), ``message`` its text, and
``logging.googleapis.com/labels`` its labels (the worker id, run and item the line is about,
those known; strings), to filter on.

The worker fields come from :class:`LogContext`, a worker observer that records what the
worker holds (a context variable on the worker's thread, plus process-wide defaults such as the
worker id for its other threads). Fields passed with ``extra=`` are included as well.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from batchml.errors import ConfigError
from batchml.queue.base import Lease, Outcome
from batchml.worker.observer import WorkerObserver

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


_item_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "batchml_log_item", default=None
)
_process_context: dict[str, Any] = {}

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def context() -> dict[str, Any]:
    """The worker fields known on this thread: process defaults, then the item in hand."""
    return {**_process_context, **(_item_context.get() or {})}


class LogContext(WorkerObserver):
    """Worker observer that tags log lines with the worker id, item, run, task and version."""

    def __init__(self, default_run: str) -> None:
        self.default_run = default_run

    def on_start(self, worker_id: str) -> None:
        _process_context["worker"] = worker_id

    def on_lease(self, lease: Lease) -> None:
        payload = lease.item.payload
        fields = {
            "worker": lease.worker,
            "item": lease.item.id,
            "attempt": lease.item.attempts,
            "run": str(payload.get("run", self.default_run)),
            "task": payload.get("task"),
            "dataset": payload.get("dataset"),
            "version": payload.get("version"),
        }
        _item_context.set({k: v for k, v in fields.items() if v is not None})

    def on_outcome(self, item_id: str, status: Outcome, seconds: float) -> None:
        _item_context.set(None)


#: the fields that become Cloud Logging labels, when a line has them
LABELS = ("worker", "run", "item")
LABELS_KEY = "logging.googleapis.com/labels"


def severity(levelno: int) -> str:
    """Cloud Logging's severity for a Python level (a custom level: the next standard one up)."""
    for limit, name in (
        (logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
    ):  # fmt: skip
        if levelno <= limit:
            return name
    return "CRITICAL"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), severity and level, logger, message,
    context, and the labels Cloud Logging indexes."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=UTC)
        data: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "severity": severity(record.levelno),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        labels = {k: str(data[k]) for k in LABELS if data.get(k) is not None}
        if labels:
            data[LABELS_KEY] = labels
        return json.dumps(data, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record, not the one it was
    created with: a host that swaps stderr (a test harness, a notebook) never leaves the handler
    holding a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def configure(level: LogLevel | str = LogLevel.INFO, fmt: LogFormat | str = LogFormat.TEXT) -> None:
    """Send the ``batchml`` loggers to stderr in the chosen format (idempotent).

    An unknown level or format raises ConfigError (the CLI offers only the known ones)."""
    try:
        level, fmt = LogLevel(level.upper()), LogFormat(fmt)
    except ValueError:
        raise ConfigError(
            f"log level {level!r} / format {fmt!r}: levels are {', '.join(LogLevel)}, "
            f"formats {', '.join(LogFormat)}"
        ) from None
    root = logging.getLogger("batchml")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _StderrHandler()
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level.value)
    root.propagate = False

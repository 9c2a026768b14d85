"""What a task receives: its item, the storage root, and the means to publish exactly once.

A task function has the signature::

    def my_task(ctx: TaskContext, payload: dict) -> dict | None

and is named in an item's payload as ``{"task": "mypkg.mymodule:my_task", ...}``. A worker runs
it only if it is on the worker's allow-list (:mod:`batchml.tasks.registry`): decorated with
``@batchml.task`` in a module the worker was started with (``--tasks mypkg.mymodule``), or
registered by an installed package as a ``batchml.tasks`` entry point. Its rules:

* Read inputs with ``ctx.storage`` (paths relative to the storage root; escapes are refused).
* Write every output through ``ctx.output(ctx.storage.run_path(ctx.run, "whatever.parquet"))``
  (``run_path`` turns the run name into its folder name), which returns a staging path to write
  to; its folders are made, never through a symlink. The file appears under its final name only
  after the queue accepted the commit with this attempt's fencing token; an abandoned attempt
  leaves nothing visible.
* Return a JSON-serialisable dict (the item's result, kept in the queue and in its record).
* Raise to fail the attempt: the item is retried with backoff, then marked dead with the error.
  Raise a :class:`~batchml.errors.PermanentError` (PayloadError, ConfigError, PathEscapeError,
  or a subclass of your own) when retrying cannot help: the item is dead at once.
* Long tasks call ``ctx.check()`` now and then: it raises LeaseLost once the lease is lost
  (or Shutdown when the worker must stop), so the attempt ends early instead of at commit.
* Never write outside ``ctx.output``; never append to a shared file.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchml.errors import LeaseLost
from batchml.queue.base import Item, LineageHead, LineageStep
from batchml.storage import Publication, Storage

if TYPE_CHECKING:
    from batchml.queue.base import WorkQueue


class Shutdown(BaseException):
    """The worker was told to stop (SIGTERM past the grace period); the item is released."""


@dataclass
class TaskContext:
    item: Item
    token: int
    run: str
    worker_id: str
    storage: Storage
    queue: WorkQueue
    log: logging.Logger
    lost: threading.Event = field(default_factory=threading.Event)
    lineage_step: LineageStep | None = None
    _staged: dict[str, str] = field(default_factory=dict)  # final -> staged (root-relative)

    @property
    def attempt(self) -> int:
        return self.item.attempts

    def check(self) -> None:
        """Raise LeaseLost if this attempt's lease was lost (another worker may own it now)."""
        if self.lost.is_set():
            raise LeaseLost(f"item {self.item.id}: lease lost while the task ran; abandoning")

    def output(self, final_rel: str) -> Path:
        """A staging path for an output to publish at ``final_rel`` (root-relative) on commit.

        The path lies in a folder private to this attempt (item id + fencing token)."""
        self.storage.resolve(final_rel, what="output path")
        staged_rel = self.storage.staging_path(self.item.id, self.token, final_rel)
        path = self.storage.prepare(staged_rel, what="staged path")
        self._staged[final_rel] = self.storage.relative(path)
        return path

    def lineage_head(self) -> LineageHead:
        """The run's current model lineage head (version 0 before the first training step)."""
        return self.queue.lineage_head(self.run)

    def advance_lineage(self, expected_version: int, head: LineageHead) -> None:
        """Ask the commit to move the lineage head from ``expected_version`` to ``head``.

        The step lands with the item's completion, atomically, or not at all."""
        self.lineage_step = LineageStep(expected_version=expected_version, head=head)

    def publication(self, final_rel: str) -> Publication:
        """The publication record of an output staged with :meth:`output` (file must exist).

        The file is hashed through folder descriptors: a staging folder swapped for a symlink
        raises PathEscapeError instead of being read through."""
        staged = self._staged[final_rel]
        return Publication(
            staged=staged, final=final_rel, sha256=self.storage.sha256(staged, what="staged path")
        )

    def publications(self) -> list[Publication]:
        return [self.publication(final) for final in self._staged]

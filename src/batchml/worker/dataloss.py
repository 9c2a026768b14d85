"""Telling a queue that lost its data from one that is finished.

A Redis restarted without its append-only file comes back empty: to a worker, an empty queue
looks drained, so without more it would exit 0 and a Kubernetes Job would read "Complete" with
most items never run. The queue's generation (:meth:`batchml.queue.base.WorkQueue.generation`)
tells them apart: a worker reads it at start, and checks it again when it finds the queue
drained and whenever an item it held vanished. A generation that changed or is gone, or an item
that vanished, is data loss: the worker stops with one error line and exit 65
(:data:`batchml.exitcodes.DATA_LOSS`). A purge while workers run is one too, on purpose: their
items were deleted under them.

How many items never ran is estimated from what survives the queue: the items that were pending
when the worker started, less the records (``runs/*/records/*.json``, one per committed item)
written since (by the ``finished_at`` their workers stamped). Items pushed after the worker
started are not counted, so, while the workers' clocks agree, it is a lower bound.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

from batchml.errors import DataLoss, QueueNotFound, UnknownItem
from batchml.queue.base import State, WorkQueue
from batchml.storage import Storage

log = logging.getLogger("batchml.worker")


class GenerationWatch:
    """One worker's view of its queue's identity; ``retry`` runs a queue call with backoff."""

    def __init__(self, queue: WorkQueue, storage: Storage, retry: Callable[..., Any]) -> None:
        self.queue = queue
        self.storage = storage
        self.retry = retry
        self.generation: str | None = None
        self.started = time.time()
        self.pending = 0

    def start(self) -> bool:
        """Read the generation and the counts at the worker's start; whether it is drained.

        A queue with neither a generation nor items does not exist (QueueNotFound). One with
        items but no generation was filled by a batchml from before generations: it is watched
        for vanished items only, until a purge and a push give it one."""
        self.started = time.time()
        self.generation = self.retry("generation", self.queue.generation)
        counts: dict[State, int] = self.retry("counts", self.queue.counts)
        self.pending = counts[State.WAITING] + counts[State.READY] + counts[State.LEASED]
        if self.generation is None:
            if not any(counts.values()):
                raise QueueNotFound(
                    f"no queue at {self.queue.url}: it has no generation and no items (never "
                    "pushed to, purged, or its data was lost); push items first"
                )
            log.warning(
                "the queue has no generation (filled by an older batchml): a loss of its data "
                "is only noticed through vanished items until it is purged and pushed again"
            )
        return self.pending == 0

    def check(self) -> None:
        """Raise DataLoss if the queue's generation changed or vanished since the start, or if
        items committed in this generation (their records say so) are no longer in it."""
        now = self.retry("generation", self.queue.generation)
        if now != self.generation:
            raise DataLoss(self._message(now))
        if now is not None:
            gone = self.retry("items", lambda: missing_committed(self.queue, self.storage, now))
            if gone:
                raise DataLoss(lost_items_message(now, gone))

    def vanished(self, item_id: str) -> NoReturn:
        """An item this worker held is no longer in the queue: always data loss."""
        now = self.retry("generation", self.queue.generation)
        if now != self.generation:
            raise DataLoss(self._message(now, item_id))
        raise DataLoss(
            f"the queue lost its data: item {item_id} vanished while this worker held it, "
            f"though generation {self.generation} remains (deleted by hand?); "
            f"{self._unprocessed()} — re-push them"
        )

    def _message(self, now: str | None, item_id: str | None = None) -> str:
        held = f"item {item_id} vanished while this worker held it; " if item_id else ""
        if now is None:
            what = (
                f"generation {self.generation} is gone (Redis restarted without appendonly? "
                "or purged)"
            )
        else:
            what = (
                f"generation {self.generation} was replaced by {now} (purged, or lost and "
                "pushed to again)"
            )
        return f"the queue lost its data: {held}{what}; {self._unprocessed()} — re-push them"

    def _unprocessed(self) -> str:
        committed = committed_since(self.storage, self.started)
        missing = max(self.pending - committed, 0)
        return (
            f"at least {missing} item(s) were never processed ({self.pending} pending when this "
            f"worker started, {committed} committed since)"
        )


def committed_since(storage: Storage, since: float) -> int:
    """How many item records (``runs/*/records/*.json``) were committed at or after ``since``."""
    runs = storage.root / "runs"
    if not runs.is_dir():
        return 0
    n = 0
    for path in runs.glob("*/records/*.json"):
        try:
            finished = float(json.loads(path.read_text()).get("finished_at") or 0.0)
        except (OSError, ValueError, AttributeError):
            continue
        n += finished >= since
    return n


#: up to this many committed items are looked up one by one; more, and the queue is read whole
LOOKUP_LIMIT = 2_000


def committed_ids(storage: Storage, generation: str) -> list[str]:
    """Ids of the items committed in ``generation``: their records are stamped with it."""
    runs = storage.root / "runs"
    if not runs.is_dir():
        return []
    ids = []
    for path in sorted(runs.glob("*/records/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("generation") == generation:
            ids.append(str(record.get("item_id")))
    return ids


def missing_committed(queue: WorkQueue, storage: Storage, generation: str) -> list[str]:
    """The items committed in ``generation`` that the queue no longer has: items it lost while
    keeping its generation, as a Redis restored from an older snapshot (RDB, no append-only
    file) does. Only the committed items are looked up (a queue of a million items is not
    read whole for a few hundred records, which held Redis busy for seconds); past
    :data:`LOOKUP_LIMIT` of them one read of every item costs less than a lookup each."""
    ids = committed_ids(storage, generation)
    if len(ids) > LOOKUP_LIMIT:
        known = {i.id for i in queue.items()}
        return [i for i in ids if i not in known]
    gone = []
    for item_id in ids:
        try:
            queue.get(item_id)
        except UnknownItem:
            gone.append(item_id)
    return gone


def lost_items_message(generation: str, gone: list[str]) -> str:
    return (
        f"the queue lost its data: {len(gone)} item(s) committed in generation {generation} "
        f"are no longer in it (e.g. {gone[0]}; a Redis restored from an older snapshot?); "
        "items pushed since that snapshot may be lost too — re-push them"
    )


def status_data_loss(queue: WorkQueue, storage: Storage) -> str | None:
    """What ``queue status`` can honestly tell of a loss: items committed in the queue's
    current generation that it no longer has. (A queue with no generation cannot be told
    from a purged one: opened to read, it is refused as no such queue.)"""
    generation = queue.generation()
    if generation is None:
        return None
    gone = missing_committed(queue, storage, generation)
    return lost_items_message(generation, gone) if gone else None

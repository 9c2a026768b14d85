"""Rolling publications forward: committed outputs a killed worker left under staging names.

A worker commits an item, then renames its staged outputs to their final names. If it dies in
between, the commit record in the queue still lists them; whoever finds the queue drained (the
last worker) or renders a report renames them. Only outputs still staged (or missing) are
touched, so a large run costs a stat per output, not a hash.
"""

from __future__ import annotations

import logging

from batchml.errors import StorageError
from batchml.queue.base import State, WorkQueue
from batchml.storage import Storage

log = logging.getLogger("batchml.publish")


def roll_forward(storage: Storage, queue: WorkQueue) -> int:
    """Publish what committed items left staged; returns how many files were published.

    An output that can no longer be published (its staged file and final file both gone, or
    the final file replaced) is logged with its item, and the others still proceed."""
    published = 0
    for item in queue.items([State.DONE]):
        for pub in item.outputs:
            if not storage.is_pending(pub):
                continue
            try:
                storage.publish(pub)
                published += 1
            except StorageError as exc:
                log.error("item %s: cannot publish %s: %s", item.id, pub.final, exc)
    if published:
        log.info("published %d output(s) a stopped worker had committed but not renamed", published)
    return published

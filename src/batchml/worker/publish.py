"""Rolling publications forward, and clearing the staging folders of attempts that ended.

A worker commits an item, then renames its staged outputs to their final names. If it dies in
between, the commit record in the queue still lists them; whoever finds the queue drained (the
last worker) or renders a report renames them. Only outputs still staged (or missing) are
touched, so a large run costs a stat per output, not a hash.

Then the staging folders of attempts that can never commit are removed: those of items that are
done, dead, waiting or ready, purged, or leased under another token (a killed worker's leftovers,
an abandoned attempt's). A folder whose attempt still holds the item's current lease is never
touched, nor one that still holds a committed output not yet published.
"""

from __future__ import annotations

import logging

from batchml.errors import StorageError
from batchml.queue.base import Item, State, WorkQueue
from batchml.storage import Storage, safe_name

log = logging.getLogger("batchml.publish")


def roll_forward(storage: Storage, queue: WorkQueue) -> int:
    """Publish what committed items left staged, then remove stale staging folders; returns
    how many files were published.

    An output that can no longer be published (its staged file and final file both gone, or
    the final file replaced) is logged with its item, and the others still proceed."""
    published = 0
    for item in queue.items([State.DONE]):
        for pub in item.outputs:
            try:
                if not storage.is_pending(pub):
                    continue
                storage.publish(pub)
                published += 1
            except StorageError as exc:
                log.error("item %s: cannot publish %s: %s", item.id, pub.final, exc)
    if published:
        log.info("published %d output(s) a stopped worker had committed but not renamed", published)
    remove_stale_staging(storage, queue)
    return published


def remove_stale_staging(storage: Storage, queue: WorkQueue) -> int:
    """Remove the staging folders of attempts that ended; returns how many were removed.

    The folders are listed before the items are read: an attempt whose folder exists was
    leased before the listing, so the items read afterwards show whether its token is still
    the current lease (tokens only grow: once another, it never becomes current again)."""
    try:
        attempts = storage.staged_attempts()
    except StorageError as exc:
        log.error("cannot list the staging folders: %s", exc)
        return 0
    if not attempts:
        return 0
    items = {safe_name(item.id): item for item in queue.items()}
    removed = 0
    for encoded, token in attempts:
        item = items.get(encoded)
        if item is not None and _still_needed(storage, item, encoded, token):
            continue
        try:
            storage.discard_staged(encoded, token)
            removed += 1
        except (StorageError, OSError) as exc:
            log.error("cannot remove the staging folder of %s t%d: %s", encoded, token, exc)
    if removed:
        log.info("removed %d staging folder(s) of attempts that ended", removed)
    return removed


def _still_needed(storage: Storage, item: Item, encoded: str, token: int) -> bool:
    if item.state == State.LEASED:
        return item.token == token  # the live attempt's own folder
    if item.state != State.DONE:
        return False
    folder = f"{storage.attempt_path(item.id, token)}/"
    for pub in item.outputs:
        if pub.staged.startswith(folder):
            try:
                if storage.is_pending(pub):
                    return True  # a committed output still waits here: roll it forward later
            except StorageError:
                return True
    return False

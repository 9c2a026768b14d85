"""``batchml lineage``: a run's model lineage; ``reset`` recovers from a lost or corrupt checkpoint.

``show`` lists the versions the queue holds with the state of each checkpoint on the storage
root: ``sha256 ok``, ``missing`` or ``sha256 mismatch`` (changed or truncated). ``reset --to N``
moves the head back to version N, whose checkpoint must verify, and re-arms the run's train
items of the days after N's, in date order: the chain re-trains them from N, each step by the
ordinary compare-and-set, so the model ends as if nothing had been lost (training is
deterministic). The checkpoints and records of the removed versions stay on disk until
re-training overwrites them; the report shows only the versions of the queue's lineage.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from batchml.cli.common import console, queue, settings
from batchml.errors import ConfigError, StorageError
from batchml.queue.base import Item, LineageHead, WorkQueue
from batchml.storage import Storage

app = typer.Typer(
    help="The run's model lineage: list it, move its head back.", no_args_is_help=True
)

OK = "sha256 ok"
MISSING = "missing"
MISMATCH = "sha256 mismatch"


def verify(storage: Storage, head: LineageHead) -> str:
    """The state of a version's checkpoint: OK, MISSING or MISMATCH (version 0 is always OK).

    A checkpoint its writer committed but had not renamed yet (it died in between) is checked
    under its staging name: the next reader publishes it."""
    from batchml.fraud.models import checkpoint  # numpy: not for `batchml --help`

    pub = head.checkpoint
    if pub is None:
        return OK
    final = storage.resolve(pub.final, what="checkpoint path")
    staged = storage.resolve(pub.staged, what="staged checkpoint path")
    try:
        checkpoint.load_file(final if final.exists() or not staged.exists() else staged, pub.sha256)
    except FileNotFoundError:
        return MISSING
    except StorageError:
        return MISMATCH
    return OK


def later_train_items(q: WorkQueue, run: str, head: LineageHead | None) -> list[Item]:
    """The run's train items for the days after ``head``'s (all of them for version 0), in
    date order: what a reset to ``head`` re-arms."""
    after = head.dataset if head is not None else None
    found = [
        i
        for i in q.items()
        if i.payload.get("task") == "fraud.train"
        and i.payload.get("run") == run
        and (after is None or str(i.payload.get("dataset")) > after)
    ]
    return sorted(found, key=lambda i: str(i.payload.get("dataset")))


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the run's versions, each with the state of its checkpoint."""
    s = settings(ctx)
    storage = s.storage()
    with queue(ctx, create=False) as q:
        heads = q.lineage(s.run)
    rows: list[dict[str, Any]] = [
        {
            "version": h.version,
            "dataset": h.dataset,
            "item_id": h.item_id,
            "checkpoint": h.checkpoint.final if h.checkpoint else None,
            "status": verify(storage, h),
        }
        for h in heads
    ]
    if as_json:
        console.print_json(json.dumps({"run": s.run, "versions": rows}))
        return
    if not rows:
        console.print(f"run {s.run!r} has no trained version yet", highlight=False)
        return
    for r in rows:
        console.print(
            f"v{r['version']:<4} {r['dataset']}  {r['checkpoint']}  {r['status']}", highlight=False
        )


@app.command("reset")
def reset(
    ctx: typer.Context,
    to: Annotated[int, typer.Option("--to", min=0, help="The version to move the head to.")],
) -> None:
    """Move the head back to version N and re-arm the run's later train steps.

    N's checkpoint must verify; workers then re-train the later days from N, in date order."""
    s = settings(ctx)
    storage = s.storage()
    with queue(ctx, create=False) as q:
        heads = q.lineage(s.run)
        current = heads[-1].version if heads else 0
        by_version = {h.version: h for h in heads}
        if to > current or (to and to not in by_version):
            raise ConfigError(
                f"run {s.run!r} has versions 0 to {current}; there is no version {to} to reset to"
            )
        target = by_version.get(to)
        if target is not None and (status := verify(storage, target)) != OK:
            earlier = [h for h in reversed(heads) if h.version < to]
            good = next((h.version for h in earlier if verify(storage, h) == OK), 0)
            path = target.checkpoint.final if target.checkpoint else "?"
            raise ConfigError(
                f"run {s.run!r}: the checkpoint of v{to} ({path}) is {status}; the last version "
                f"whose checkpoint verifies is v{good}: run `batchml lineage reset --to {good}`"
            )
        rearm = later_train_items(q, s.run, target)
        q.reset_lineage(s.run, to, [i.id for i in rearm])
    days = f" ({rearm[0].payload.get('dataset')} … {rearm[-1].payload.get('dataset')})"
    console.print(
        f"run {s.run!r}: head moved from v{current} to v{to}; re-armed {len(rearm)} train "
        f"item(s){days if rearm else ''}; run `batchml worker` to re-train them",
        highlight=False,
    )

"""``batchml queue``: fill the queue, inspect it, administer it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from batchml.cli.common import console, queue, settings
from batchml.errors import ConfigError
from batchml.fraud import datasets, plan
from batchml.fraud.lineage import ModelConfig
from batchml.fraud.pipeline import FeatureSpec
from batchml.queue.base import ItemSpec, PushOutcome, State, WorkQueue

app = typer.Typer(help="The work queue.", no_args_is_help=True)


def _summarise(outcomes: list[PushOutcome]) -> str:
    counts = {o: outcomes.count(o) for o in PushOutcome}
    return ", ".join(f"{n} {o.value}" for o, n in counts.items() if n) or "nothing to push"


@app.command("push")
def push(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Option("--glob", help="Only days matching this glob.")] = "*",
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD), inclusive.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD), inclusive.")] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(
            help="Dataset (root-relative) to evaluate each version on; repeatable. "
            "Default: every file in datasets/testing/."
        ),
    ] = None,
    test_days: Annotated[
        str | None, typer.Option(help="Stored days to evaluate on, as FIRST:LAST.")
    ] = None,
    model: Annotated[str, typer.Option(envvar="BATCHML_MODEL", help="Model kind.")] = "sgd",
    force: Annotated[bool, typer.Option(help="Re-run days that are already done or dead.")] = False,
) -> None:
    """Queue the imported training days of the run, in date order (features, then training)."""
    s = settings(ctx)
    storage = s.storage()
    days = datasets.training_days(storage, pattern, start, end)
    held_out: list[str] = []
    if test_days:
        first, _, last = test_days.partition(":")
        held_out = datasets.training_days(storage, "*", first, last or first)
        if not held_out:
            raise ConfigError(f"--test-days {test_days}: no stored day in that range")
        days = [d for d in days if d < held_out[0]]
    if not days:
        raise ConfigError(
            f"no training days under {storage.dataset_dir('training')} match; "
            "run `batchml data generate` or `batchml data import` first"
        )
    if test is None:
        folder = storage.dataset_dir(datasets.TESTING)
        test = (
            sorted(f"datasets/testing/{p.name}" for p in folder.glob("*.parquet"))
            if folder.is_dir()
            else []
        )
    for path in test:
        storage.resolve(path, what="--test dataset")
    with queue(ctx) as q:
        specs = plan.training_items(
            q, days, run=s.run, test=test, test_days=held_out, model=ModelConfig(kind=model),
            spec=FeatureSpec(),
        )  # fmt: skip
        outcomes = q.push(specs, force=force)
    console.print(
        f"run {s.run!r}: {len(days)} day(s) {days[0]} … {days[-1]}; {_summarise(outcomes)}"
    )


@app.command("add")
def add(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name or package.module:function.")],
    payload: Annotated[str, typer.Option(help="JSON object given to the task.")] = "{}",
    item_id: Annotated[
        str | None, typer.Option("--id", help="Item id (default: from payload).")
    ] = None,
    depends_on: Annotated[list[str] | None, typer.Option(help="Ids that must end first.")] = None,
    priority: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option()] = False,
) -> None:
    """Queue one item for any task, e.g. your own ``mypkg.tasks:handle``."""
    try:
        body: Any = json.loads(payload)
    except ValueError as exc:
        raise ConfigError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError("--payload must be a JSON object")
    body = {"task": task, "run": settings(ctx).run, **body}
    spec = ItemSpec(payload=body, id=item_id, depends_on=tuple(depends_on or ()), priority=priority)
    with queue(ctx) as q:
        outcome = q.push([spec], force=force)[0]
    console.print(f"{spec.item_id}: {outcome.value}")


def status_data(q: WorkQueue, run: str) -> dict[str, Any]:
    counts = q.counts()
    dead = q.items([State.DEAD])
    return {
        "queue": q.url,
        "counts": {state.value: counts[state] for state in State},
        "drained": q.drained(),
        "lineage_head": q.lineage_head(run).to_json(),
        "leased": [
            {"id": i.id, "worker": i.worker, "attempt": i.attempts, "deadline": i.deadline}
            for i in q.items([State.LEASED])
        ],
        "dead": [{"id": i.id, "attempts": i.attempts, "error": i.last_error} for i in dead],
    }


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Counts per state, the lineage head, leased items and dead items with their errors."""
    s = settings(ctx)
    with queue(ctx) as q:
        data = status_data(q, s.run)
    if as_json:
        console.print_json(json.dumps(data))
        return
    table = Table(title=f"queue {data['queue']}")
    for state in State:
        table.add_column(state.value, justify="right")
    table.add_row(*(str(data["counts"][state.value]) for state in State))
    console.print(table)
    head = data["lineage_head"]
    ckpt = (head.get("checkpoint") or {}).get("final", "-")
    console.print(
        f"lineage {s.run!r}: v{head['version']} dataset={head['dataset']} checkpoint={ckpt}"
    )
    for lease in data["leased"]:
        console.print(f"leased  {lease['id']} by {lease['worker']} (attempt {lease['attempt']})")
    for item in data["dead"]:
        console.print(
            f"[red]dead[/red]    {item['id']} after {item['attempts']} attempt(s): {item['error']}"
        )


@app.command("requeue-dead")
def requeue_dead(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(help="Only these ids.")] = None,
) -> None:
    """Give dead items a fresh set of attempts."""
    with queue(ctx) as q:
        n = q.requeue_dead(ids or None)
    console.print(f"requeued {n} dead item(s)")


@app.command("purge")
def purge(
    ctx: typer.Context, yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False
) -> None:
    """Delete every item, the lineage heads and the history of this queue."""
    if not yes:
        raise ConfigError("purge deletes the whole queue and its lineage; pass --yes to confirm")
    with queue(ctx) as q:
        q.purge()
    console.print("queue purged")

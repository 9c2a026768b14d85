"""``batchml queue``: fill the queue, inspect it, administer it."""

from __future__ import annotations

import contextlib
import json
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.live import Live

from batchml import exitcodes
from batchml.cli import inspect_cmd
from batchml.cli.common import console, err_console, queue, settings
from batchml.cli.data import day_option
from batchml.cli.inspect_cmd import emit_json
from batchml.errors import ConfigError, PermanentError
from batchml.fraud.models.kinds import DEFAULT_KIND, KIND_NAMES, known_kinds
from batchml.observe import console as status_console
from batchml.observe import status as observe_status
from batchml.queue.base import ItemSpec, PushOutcome, State, WorkQueue
from batchml.tasks import TaskRegistry
from batchml.worker.dataloss import status_data_loss

app = typer.Typer(help="The work queue.", no_args_is_help=True)


def _summarise(outcomes: list[PushOutcome]) -> str:
    counts = {o: outcomes.count(o) for o in PushOutcome}
    return ", ".join(f"{n} {o.value}" for o, n in counts.items() if n) or "nothing to push"


class FeatureSet(StrEnum):
    """The choices of ``--features``: batchml.fraud.features.pipeline.FEATURE_SETS (named here
    too so the command starts without pandas; a test checks they agree)."""

    HANDBOOK = "handbook"
    BEHAVIOUR = "behaviour"


def _known_model(ctx: typer.Context, value: str | None) -> str | None:
    """``--model``: a built-in kind or one the --tasks modules register (a usage error else)."""
    if value is None:
        return None
    TaskRegistry.load(settings(ctx).tasks)  # the --tasks modules may register model kinds
    kinds = known_kinds()
    if value not in kinds:
        raise typer.BadParameter(
            f"{value!r} is not a model kind: choose from {', '.join(kinds)}, or register one with "
            "@model_kind in a module named by --tasks"
        )
    return value


@app.command("push")
def push(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Option("--glob", help="Only days matching this glob.")] = "*",
    start: Annotated[
        str | None,
        typer.Option(
            help="First day (YYYY-MM-DD), inclusive.",
            callback=lambda value: day_option(value, "--start"),
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            help="Last day (YYYY-MM-DD), inclusive.",
            callback=lambda value: day_option(value, "--end"),
        ),
    ] = None,
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
    model: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHML_MODEL",
            metavar="|".join(KIND_NAMES),
            callback=_known_model,
            help=f"Model kind: {', '.join(KIND_NAMES)}, or one a --tasks module registers "
            "(docs/fraud.md). Default: the run's own "
            f"(fixed by its first push), {DEFAULT_KIND} for a new run.",
        ),
    ] = None,
    features: Annotated[
        FeatureSet | None,
        typer.Option(
            help="Feature set: handbook (its 15 inputs) or behaviour (29: docs/fraud.md). "
            "Default: the run's own (fixed by its first push), handbook for a new run.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Re-train the run from the first pushed day on (every later day too)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Queue the imported training days of the run, in date order (features, then training).

    Days are appended after the run's last day only; an earlier day is refused (use another
    --run, or --force), as is a model other than the run's.

    --json prints {"run": RUN, "days": [YYYY-MM-DD, ...], "outcomes": {"added": N,
    "exists": N, "reset": N}} (the outcomes count the items pushed, two per day)."""
    from batchml.fraud import plan  # imported here: the other commands start without pandas

    s = settings(ctx)
    TaskRegistry.load(s.tasks)  # imports the --tasks modules: they may register model kinds
    with queue(ctx) as q:
        days, outcomes = plan.push_training(
            q, s.storage(), run=s.run, pattern=pattern, start=start, end=end, test=test,
            test_days=test_days, model_kind=model, force=force,
            feature_set=features.value if features else None,
        )  # fmt: skip
    if as_json:
        counts = {o.value: outcomes.count(o) for o in PushOutcome}
        emit_json({"run": s.run, "days": days, "outcomes": counts})
        return
    console.print(
        f"run {s.run!r}: {len(days)} day(s) {days[0]} … {days[-1]}; {_summarise(outcomes)}"
    )


@app.command("add")
def add(
    ctx: typer.Context,
    task: Annotated[
        str,
        typer.Argument(help="A registered task: a built-in, or package.module:function (--tasks)."),
    ],
    payload: Annotated[str, typer.Option(help="JSON object given to the task.")] = "{}",
    item_id: Annotated[
        str | None, typer.Option("--id", help="Item id (default: from payload).")
    ] = None,
    depends_on: Annotated[list[str] | None, typer.Option(help="Ids done first.")] = None,
    priority: Annotated[
        int, typer.Option(help="Higher runs first among the ready items (fraud.train: 10).")
    ] = 0,
    force: Annotated[
        bool,
        typer.Option(
            help="Reset an item with this id that exists (not leased): new payload, fresh attempts."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Queue one item for a registered task, e.g. your own mypkg.tasks:handle.

    The task must be on the allow-list (a built-in, an entry point, or a @batchml.task of a
    --tasks module) and its payload must pass the task's validator, as a worker would check.

    --json prints {"id": ID, "outcome": "added" | "exists" | "reset"}."""
    try:
        body: Any = json.loads(payload)
    except ValueError as exc:
        raise ConfigError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError("--payload must be a JSON object")
    s = settings(ctx)
    body = {"task": task, "run": s.run, **body}
    registry = TaskRegistry.load(s.tasks)
    try:
        registry.prepare(body, s.storage())
    except PermanentError as exc:
        raise ConfigError(f"queue add refused: {exc}") from None
    spec = ItemSpec(payload=body, id=item_id, depends_on=tuple(depends_on or ()), priority=priority)
    with queue(ctx) as q:
        outcome = q.push([spec], force=force)[0]
    if as_json:
        emit_json({"id": spec.item_id, "outcome": outcome.value})
        return
    console.print(f"{spec.item_id}: {outcome.value}")


def status_data(
    q: WorkQueue, run: str, stale_after: float = 90.0, *, per_run: bool = False
) -> dict[str, Any]:
    """The snapshot ``queue status`` shows (see :mod:`batchml.observe.status`)."""
    options = observe_status.StatusOptions(stale_after=stale_after)
    return observe_status.gather(q, run, options, per_run=per_run)


def _run_given(ctx: typer.Context) -> bool:
    """Whether --run or BATCHML_RUN named the run (then status counts its items too)."""
    source = ctx.find_root().get_parameter_source("run")
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until Ctrl-C (every --interval seconds).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    stale_after: Annotated[
        float, typer.Option(help="Seconds without a report before a worker counts as gone.")
    ] = 90.0,
) -> None:
    """Counts per state, workers, lineage head, throughput, leased and dead items.

    With --run (or BATCHML_RUN), the run's own items are counted too. The --json schema is
    docs/status.md."""
    s = settings(ctx)
    per_run = _run_given(ctx)
    with queue(ctx, create=False) as q:
        if as_json or not watch:
            data = status_data(q, s.run, stale_after, per_run=per_run)
            if as_json:
                console.print_json(json.dumps(data))
            else:
                console.print(status_console.render(data))
            lost = status_data_loss(q, s.storage())
            if lost:
                err_console.print(f"[red]data loss:[/red] {lost}", highlight=False)
                raise typer.Exit(exitcodes.DATA_LOSS)
        else:
            live = Live(console=console, auto_refresh=False)
            with live, contextlib.suppress(KeyboardInterrupt):
                while True:
                    data = status_data(q, s.run, stale_after, per_run=per_run)
                    live.update(status_console.render(data))
                    live.refresh()
                    time.sleep(interval)


@app.command("requeue-dead")
def requeue_dead(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(help="Only these ids.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Give dead items a fresh set of attempts; the items they blocked wait for them again.

    --json prints {"requeued": N, "unblocked": M}: dead items requeued, and blocked items
    behind them that wait again."""
    with queue(ctx, create=False) as q:
        blocked = q.counts()[State.BLOCKED]
        n = q.requeue_dead(ids or None)
        unblocked = blocked - q.counts()[State.BLOCKED]
    if as_json:
        emit_json({"requeued": n, "unblocked": max(unblocked, 0)})
        return
    behind = f"; {unblocked} item(s) blocked behind them wait again" if unblocked > 0 else ""
    console.print(f"requeued {n} dead item(s){behind}")


@app.command("purge")
def purge(
    ctx: typer.Context, yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False
) -> None:
    """Delete every item, the lineage heads and the history of this queue."""
    if not yes:
        raise ConfigError("purge deletes the whole queue and its lineage; pass --yes to confirm")
    with queue(ctx, create=False) as q:
        q.purge()
    console.print("queue purged")


app.command("items")(inspect_cmd.items)
app.command("show")(inspect_cmd.show)

"""``batchml demo``: the main job end to end on the embedded default (SQLite, local folder)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from batchml import exitcodes
from batchml.cli.common import console, queue, settings
from batchml.cli.data import generate_days
from batchml.errors import ConfigError
from batchml.fraud.kinds import DEFAULT_KIND, KIND_NAMES
from batchml.local import spawn_workers, wait
from batchml.progress import activity, progress_bars
from batchml.queue.base import State
from batchml.report import write_reports
from batchml.storage import safe_name

MARKER = ".batchml-demo"


def _prepare(root: Path, fresh: bool) -> None:
    if fresh and root.exists():
        if not (root / MARKER).exists() and any(root.iterdir()):
            raise ConfigError(
                f"--fresh would delete {root}, which is not a demo folder; pick another --root"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()


def demo(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(min=1, envvar="BATCHML_WORKERS")] = 2,
    days: Annotated[
        int, typer.Option(min=16, help="Days simulated (last 14: delay + test).")
    ] = 110,
    customers: Annotated[int, typer.Option(min=10)] = 3000,
    terminals: Annotated[int, typer.Option(min=10)] = 6000,
    seed: Annotated[int, typer.Option()] = 0,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo folder.")] = False,
    model: Annotated[
        str,
        typer.Option(envvar="BATCHML_MODEL", help=f"Model kind: {', '.join(KIND_NAMES)}."),
    ] = DEFAULT_KIND,
) -> None:
    """Simulate days, queue them, train with N worker processes, evaluate, and summarise."""
    from batchml.fraud import plan
    from batchml.fraud.evaluate import Protocol, evaluate
    from batchml.fraud.lineage import ModelConfig
    from batchml.fraud.simulate import SimulationConfig

    s = settings(ctx)
    started = time.monotonic()
    _prepare(s.root, fresh)
    storage = s.storage()
    config = SimulationConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    all_days = generate_days(storage, config)
    train_days, test_week = all_days[:-14], all_days[-7:]
    with queue(ctx) as q:
        specs = plan.training_items(
            q, train_days, run=s.run, test_days=test_week, model=ModelConfig(kind=model)
        )
        q.push(specs)
        procs = spawn_workers(s, workers, s.root / "logs", ["--lease-ttl", "30"])
        with progress_bars() as bars:
            items = bars.bar(f"items done ({workers} workers)", len(q.items()))

            def show(counts: dict[State, int]) -> None:
                ended = counts[State.DONE] + counts[State.DEAD] + counts[State.BLOCKED]
                items.update(ended, sum(counts.values()))

            codes = wait(q, procs, show)
        with activity("writing the report and evaluating the final model"):
            report = write_reports(storage, s.run, q)
            evaluation = evaluate(storage, q, s.run, protocol=Protocol())
        dead = q.counts()[State.DEAD]
    outcome = _Outcome(
        root=s.root, run=s.run, train_days=train_days, test_week=test_week, report=report,
        evaluation=evaluation, codes=codes, dead=dead, seconds=time.monotonic() - started,
    )  # fmt: skip
    _summary(outcome)
    if any(code != exitcodes.OK for code in codes):
        raise typer.Exit(exitcodes.DEAD_ITEMS)


@dataclass(frozen=True)
class _Outcome:
    root: Path
    run: str
    train_days: list[str]
    test_week: list[str]
    report: dict[str, Any]
    evaluation: dict[str, Any]
    codes: list[int]
    dead: int
    seconds: float


def _summary(o: _Outcome) -> None:
    m = o.evaluation["metrics"]
    final = o.report["final"] or {}
    console.print()
    console.print(
        f"[bold]batchml demo[/bold] finished in {o.seconds:.1f}s (workers exited {o.codes})"
    )
    console.print(
        f"  trained {len(o.report['versions'])} lineage versions on {len(o.train_days)} days "
        f"({o.train_days[0]} … {o.train_days[-1]}); dead items: {o.dead}"
    )
    console.print(
        f"  test week {o.test_week[0]} … {o.test_week[-1]} (after a {o.evaluation['delay']}-day "
        f"label delay), {m['rows']} transactions, {m['frauds']} frauds"
    )
    for key, label in (
        ("roc_auc", "ROC AUC"), ("average_precision", "average precision"),
        ("card_precision_at_k", "card precision@100"), ("accuracy", "accuracy"),
    ):  # fmt: skip
        value = m[key]
        console.print(f"  {label:20} {value:.4f}" if value is not None else f"  {label:20} n/a")
    console.print(f"  final checkpoint     {o.root / str(final.get('checkpoint', '-'))}")
    console.print(
        f"  report               {o.root / 'runs' / safe_name(o.run) / 'report.txt'} "
        "(and report.json)"
    )
    console.print(f"  worker logs          {o.root / 'logs'}")

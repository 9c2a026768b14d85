"""``batchml demo``: the main job end to end on the embedded default (SQLite, local folder)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from batchml import exitcodes
from batchml.cli.common import console, root_given, settings
from batchml.cli.data import generate_days
from batchml.errors import ConfigError
from batchml.fraud.models.kinds import ModelKind
from batchml.observe.progress import activity, progress_bars
from batchml.queue import open_queue
from batchml.queue.base import State
from batchml.report import write_reports
from batchml.settings import Settings
from batchml.storage import safe_name
from batchml.worker.local import spawn_workers, wait

#: the demo's own storage root when neither --root nor BATCHML_ROOT is given
DEMO_ROOT = Path("batchml-demo")
#: written when the demo creates (or adopts an empty) root; only such a root is a demo root
MARKER = ".batchml-demo"
MARKER_TEXT = (
    "batchml demo root: made by `batchml demo`; `batchml demo --fresh` deletes what the demo "
    "made here (datasets/, features/, runs/, logs/, .staging/, queue.db) and nothing else.\n"
)
#: what the demo makes in its root: all that --fresh deletes
MADE = (
    "datasets", "features", "runs", "logs", ".staging",
    "queue.db", "queue.db-wal", "queue.db-shm", "queue.db-journal",
)  # fmt: skip


def is_demo_root(root: Path) -> bool:
    """True if ``root`` carries the marker the demo writes (an empty marker left by an older
    batchml in any folder does not count)."""
    try:
        return (root / MARKER).read_text(encoding="utf-8").startswith("batchml demo root:")
    except (OSError, UnicodeDecodeError):
        return False


def _holds(root: Path) -> str:
    """What a folder holds, for the refusal: its first entries, and its training days."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    training = root / "datasets" / "training"
    days = len(list(training.glob("*.parquet"))) if training.is_dir() else 0
    return shown + (f"; {days} training day(s)" if days else "")


def _prepare(root: Path, fresh: bool) -> None:
    """Make ``root`` ready for the demo; refuse any folder with content the demo did not make."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"demo root {root} is a file; drop --root to use ./{DEMO_ROOT}")
    if root.is_dir() and not is_demo_root(root) and any(root.iterdir()):
        raise ConfigError(
            f"{root} is not a demo folder (it holds {_holds(root)}): the demo writes only into "
            f"a folder it made; drop --root / BATCHML_ROOT to use ./{DEMO_ROOT}, or give a "
            "new or empty folder"
        )
    if fresh and root.is_dir():
        for name in MADE:
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    if not is_demo_root(root):
        (root / MARKER).write_text(MARKER_TEXT, encoding="utf-8")


def _demo_settings(ctx: typer.Context) -> Settings:
    """The settings with the demo's root (its own default) and that root's SQLite queue."""
    s = settings(ctx)
    root = s.root if root_given(ctx) else DEMO_ROOT
    if s.queue_url is not None:
        raise ConfigError(
            f"the demo runs on its own SQLite queue in {root}; drop --queue / unset "
            "BATCHML_QUEUE (it would add the demo's items to that queue)"
        )
    return replace(s, root=root)


def demo(
    ctx: typer.Context,
    workers: Annotated[
        int, typer.Option(min=1, envvar="BATCHML_WORKERS", help="Local worker processes to run.")
    ] = 2,
    days: Annotated[
        int, typer.Option(min=16, help="Days simulated (last 14: delay + test).")
    ] = 110,
    customers: Annotated[int, typer.Option(min=10, help="Simulated card holders.")] = 3000,
    terminals: Annotated[int, typer.Option(min=10, help="Simulated payment terminals.")] = 6000,
    seed: Annotated[
        int, typer.Option(help="Random seed of the simulation (same seed, same days).")
    ] = 0,
    fresh: Annotated[
        bool, typer.Option(help="Delete what an earlier demo made in its folder first.")
    ] = False,
    model: Annotated[
        ModelKind,
        typer.Option(envvar="BATCHML_MODEL", help="Model kind (docs/fraud.md)."),
    ] = ModelKind.LGBM,
) -> None:
    """Simulate days, queue them, train with N worker processes, evaluate, and summarise.

    It works in its own folder, ./batchml-demo unless --root or BATCHML_ROOT names another,
    and refuses any folder with content it did not make (a demo folder carries .batchml-demo)."""
    s = _demo_settings(ctx)
    started = time.monotonic()
    _prepare(s.root, fresh)
    from batchml.fraud import plan
    from batchml.fraud.data.simulate import SimulationConfig
    from batchml.fraud.evaluation.evaluate import Protocol, evaluate
    from batchml.fraud.models.lineage import ModelConfig

    storage = s.storage()
    config = SimulationConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    all_days = generate_days(
        storage, config, hint="an earlier demo ran with other settings: pass --fresh"
    )
    train_days, test_week = all_days[:-14], all_days[-7:]
    with open_queue(s.resolved_queue_url, s.queue_options()) as q:
        specs = plan.training_items(
            q, train_days, run=s.run, test_days=test_week, model=ModelConfig(kind=model.value)
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

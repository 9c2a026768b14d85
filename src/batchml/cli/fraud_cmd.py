"""``batchml fraud``: evaluate a lineage version, queue batch scoring, export features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchml.cli.common import console, existing_root, queue
from batchml.cli.data import day_option
from batchml.cli.inspect_cmd import emit_json
from batchml.errors import ConfigError
from batchml.observe.progress import activity

if TYPE_CHECKING:
    from batchml.storage import Storage

# The fraud modules (pandas, scikit-learn, LightGBM) are imported inside each command, so that
# `batchml --help`, `worker --check` and `queue status` start in a fraction of a second.

app = typer.Typer(help="The fraud-detection workload.", no_args_is_help=True)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    version: Annotated[int | None, typer.Option(help="Lineage version (default: head).")] = None,
    test_start: Annotated[
        str | None,
        typer.Option(
            help="First test day (YYYY-MM-DD).",
            callback=lambda value: day_option(value, "--test-start"),
        ),
    ] = None,
    test_days: Annotated[int, typer.Option(min=1, help="Days in the test period.")] = 7,
    delay: Annotated[int, typer.Option(min=0, help="Days before a label is known.")] = 7,
    top_k: Annotated[int, typer.Option(min=1, help="Cards checked per day.")] = 100,
    known_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Days of frauds before the delay period whose cards count as known "
            "compromised and leave the test set (the handbook's training week); 0: every day.",
        ),
    ] = 7,
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test",
            help="Evaluate on this stored dataset file instead of the test period, e.g. "
            "datasets/testing/test_dataset.parquet (repeatable); it must hold no trained day.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """ROC AUC, average precision, card precision@k and accuracy on the test period.

    The handbook's protocol: the test days start --delay days after the last trained day;
    cards with a fraud known by a test day leave that day's test set (docs/fraud.md)."""
    from batchml.fraud import plan
    from batchml.fraud.evaluation.evaluate import Protocol, evaluate

    s = existing_root(ctx)
    protocol = Protocol(
        test_start=test_start, test_days=test_days, delay=delay, top_k=top_k, known_days=known_days
    )
    with queue(ctx, create=False) as q, activity(f"evaluating run {s.run!r}"):
        spec = plan.run_spec(q, s.run)
        result = evaluate(
            s.storage(), q, s.run, version=version, protocol=protocol, spec=spec, test=test
        )
    if as_json:
        console.print_json(json.dumps(result))
        return
    m = result["metrics"]
    on = ", ".join(result["test_files"])
    on = (
        f"{on} ({result['test_days'][0]} … {result['test_days'][-1]})"
        if on
        else (f"{result['test_days'][0]} … {result['test_days'][-1]}")
    )
    console.print(
        f"run {s.run!r} v{result['version']} (trained through {result['trained_through']}), "
        f"tested on {on}"
    )
    for key in ("roc_auc", "average_precision", "card_precision_at_k", "accuracy"):
        console.print(f"  {key:22} {_fmt(m[key])}")
    console.print(
        f"  {'rows':22} {m['rows']} ({m['frauds']} frauds; "
        f"{result['excluded_known_compromised']} of known compromised cards excluded)"
    )


def _score_targets(storage: Storage, names: list[str]) -> list[tuple[str, str]]:
    """(name, root-relative path) of each day (YYYY-MM-DD) or testing dataset name."""
    from batchml.fraud.data import datasets

    targets = []
    for name in names:
        if name[:4].isdigit():
            path = datasets.day_path(name)
        else:
            path = f"datasets/{datasets.TESTING}/{name}.parquet"
            storage.resolve(path, what="dataset name")
        if not storage.exists(path):
            raise ConfigError(f"{name}: no stored dataset {path}; import or generate it first")
        targets.append((name, path))
    return targets


@app.command("score")
def score_cmd(
    ctx: typer.Context,
    days: Annotated[list[str], typer.Argument(help="Days (YYYY-MM-DD) or testing dataset names.")],
    version: Annotated[
        int | None, typer.Option(help="Pinned version (default: the head now).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Score again datasets already scored.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Queue batch scoring of datasets with a pinned lineage version; run workers to do it.

    Each dataset becomes an independent item (any worker, any order) that writes
    runs/<run>/predictions/v<NNNN>/<name>.parquet: TRANSACTION_ID, SCORE, MODEL_VERSION.

    --json prints {"run": RUN, "version": V, "trained_through": DAY, "queued": N,
    "items": [{"id": ID, "outcome": "added" | "exists" | "reset"}, ...]}."""
    from batchml.fraud import plan
    from batchml.fraud.evaluation.evaluate import pick_version

    s = existing_root(ctx)
    targets = _score_targets(s.storage(), days)
    with queue(ctx, create=False) as q:
        head, _ = pick_version(q, s.run, version)
        spec = plan.run_spec(q, s.run)
        specs = plan.scoring_items(targets, run=s.run, version=head.version, spec=spec)
        outcomes = q.push(specs, force=force)
    added = sum(o.value != "exists" for o in outcomes)
    if as_json:
        pushed = zip(specs, outcomes, strict=True)
        listed = [{"id": spec.item_id, "outcome": o.value} for spec, o in pushed]
        emit_json(
            {"run": s.run, "version": head.version, "trained_through": head.dataset,
             "queued": added, "items": listed}
        )  # fmt: skip
        return
    console.print(
        f"queued {added} of {len(specs)} scoring item(s) with v{head.version} "
        f"(trained through {head.dataset}); run `batchml worker`"
    )


@app.command("features")
def features_cmd(
    ctx: typer.Context,
    days: Annotated[list[str], typer.Argument(help="Days (YYYY-MM-DD).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
) -> None:
    """Write the engineered features of some days (with TRANSACTION_ID) to a Parquet file.

    All the days are computed in one pass (each stored day read once, look-back included), and
    each day's table is also written to the feature cache the workers and readers use."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from batchml.fraud.features import pipeline
    from batchml.fraud.features.pipeline import FeatureSpec

    storage = existing_root(ctx).storage()
    spec = FeatureSpec()
    computed = pipeline.compute_days(storage, days, spec)
    if computed.invalid:
        day, error = min(computed.invalid.items())
        raise ConfigError(f"day {day}: {error}; import or generate it first")

    def cache(day: str) -> None:
        storage.write_bytes(spec.cache_path(day), pipeline.arrow_to_bytes(computed.tables[day]))

    table = pa.concat_tables([computed.tables[d] for d in days])
    out.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Parquet frees the GIL
        cached = pool.map(cache, computed.tables)
        out.write_bytes(pipeline.arrow_to_bytes(table))
        list(cached)  # raises what a cache write raised
    console.print(f"wrote {table.num_rows} rows × {len(spec.inputs)} features to {out}")

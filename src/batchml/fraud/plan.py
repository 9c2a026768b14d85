"""Turning datasets into queue items, with the order expressed in the queue (DESIGN.md).

Per training day, a ``fraud.features`` item (no dependencies: every worker computes features
in parallel) and a ``fraud.train`` item that depends on its own features item and on the
previous day's train item. Train items carry a higher priority, so the chain advances as soon
as a step becomes ready while the remaining workers compute features. A worker never waits for
another item while holding a lease: an item simply is not leasable before its dependencies end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchml.errors import ConfigError
from batchml.fraud import datasets
from batchml.fraud.kinds import DEFAULT_KIND
from batchml.fraud.lineage import ModelConfig
from batchml.fraud.pipeline import FeatureSpec
from batchml.queue.base import ItemSpec, PushOutcome, WorkQueue
from batchml.storage import Storage

TRAIN_PRIORITY = 10


def features_id(spec: FeatureSpec, day: str) -> str:
    return f"features:{spec.id}:{day}"


def train_id(run: str, day: str) -> str:
    return f"train:{run}:{day}"


def score_id(run: str, version: int, dataset: str) -> str:
    return f"score:{run}:v{version}:{dataset}"


def features_item(spec: FeatureSpec, day: str) -> ItemSpec:
    payload = {
        "task": "fraud.features",
        "dataset": day,
        "path": datasets.day_path(day),
        "features": spec.to_json(),
    }
    return ItemSpec(payload=payload, id=features_id(spec, day))


def _previous_train(queue: WorkQueue, run: str, day: str) -> str | None:
    """The latest train item of the run already queued for a day before ``day``."""
    prefix = train_id(run, "")
    earlier = [
        item.id
        for item in queue.items()
        if item.id.startswith(prefix) and item.id[len(prefix) :] < day
    ]
    return max(earlier, key=lambda i: i[len(prefix) :]) if earlier else None


def training_items(
    queue: WorkQueue,
    days: Sequence[str],
    *,
    run: str,
    test: Sequence[str] = (),
    test_days: Sequence[str] = (),
    model: ModelConfig | None = None,
    spec: FeatureSpec | None = None,
    max_attempts: int | None = None,
) -> list[ItemSpec]:
    """Items that train the run's lineage on ``days`` in date order (features first).

    ``test`` lists root-relative dataset files to evaluate every version on; ``test_days``
    are stored days used the same way (their features are queued too, ahead of training).
    """
    spec = spec or FeatureSpec()
    model = (model or ModelConfig()).resolved()
    ordered = sorted(set(days))
    tests = [*test, *(datasets.day_path(d) for d in test_days)]
    specs: list[ItemSpec] = [features_item(spec, d) for d in sorted(set(test_days))]
    specs += [features_item(spec, d) for d in ordered if d not in set(test_days)]
    test_deps = tuple(features_id(spec, d) for d in sorted(set(test_days)))
    previous = _previous_train(queue, run, ordered[0]) if ordered else None
    for day in ordered:
        payload: dict[str, Any] = {
            "task": "fraud.train",
            "run": run,
            "dataset": day,
            "path": datasets.day_path(day),
            "test": tests,
            "model": model.to_json(),
            "features": spec.to_json(),
        }
        deps = (features_id(spec, day), *test_deps, *((previous,) if previous else ()))
        specs.append(
            ItemSpec(
                payload=payload,
                id=train_id(run, day),
                depends_on=tuple(dict.fromkeys(deps)),
                priority=TRAIN_PRIORITY,
                max_attempts=max_attempts,
            )
        )
        previous = train_id(run, day)
    return specs


def scoring_items(
    datasets_to_score: Sequence[tuple[str, str]],
    *,
    run: str,
    version: int,
    spec: FeatureSpec | None = None,
) -> list[ItemSpec]:
    """One independent ``fraud.score`` item per (name, path), pinned to lineage ``version``.

    No dependencies: scoring items run in parallel on any worker, in any order. The model
    comes from the version's checkpoint, so the item names only the version."""
    spec = spec or FeatureSpec()
    return [
        ItemSpec(
            payload={
                "task": "fraud.score",
                "run": run,
                "dataset": name,
                "path": path,
                "version": version,
                "features": spec.to_json(),
            },
            id=score_id(run, version, name),
        )
        for name, path in datasets_to_score
    ]


def push_training(
    queue: WorkQueue,
    storage: Storage,
    *,
    run: str,
    pattern: str = "*",
    start: str | None = None,
    end: str | None = None,
    test: Sequence[str] | None = None,
    test_days: str | None = None,
    model_kind: str = DEFAULT_KIND,
    force: bool = False,
) -> tuple[list[str], list[PushOutcome]]:
    """Queue the stored training days that match (``queue push``); returns days and outcomes.

    ``test_days`` (``FIRST:LAST``) holds stored days out as the evaluation set of every
    version; ``test`` names dataset files for the same purpose (default: every file in
    datasets/testing/)."""
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
        names = sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []
        test = [f"datasets/{datasets.TESTING}/{name}" for name in names]
    for path in test:
        storage.resolve(path, what="--test dataset")
    specs = training_items(
        queue, days, run=run, test=test, test_days=held_out, model=ModelConfig(kind=model_kind)
    )
    return days, queue.push(specs, force=force)

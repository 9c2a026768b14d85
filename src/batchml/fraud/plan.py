"""Turning datasets into queue items, with the order expressed in the queue (docs/design.md).

A ``fraud.features`` item per block of up to ``FEATURE_BLOCK_DAYS`` (7) consecutive days (no
dependencies: every worker computes features in parallel): it reads its days and their 37-day
look-back once, so features cost about (7 + 37) / 7 day-reads per day instead of 38. Per
training day, a ``fraud.train`` item that depends on the features item covering its day and on
the previous day's train item. Train items carry a higher priority, so the chain advances as soon
as a step becomes ready while the remaining workers compute features. A worker never waits for
another item while holding a lease: an item simply is not leasable before its dependencies are
done. A dependency that dies blocks the rest of the chain (state ``blocked``) until ``queue
requeue-dead`` revives it: the lineage never skips a day.

A run's lineage only grows forward (:func:`training_items`):

- Its model (kind and parameters) and features are fixed by its first push, read back from its
  queued train items; a push asking for others is refused, naming both. An invalid model is
  refused at push, never at train time.
- A day is appended only after the run's last day, queued or trained; an earlier one is refused
  with the options: another ``--run``, or ``--force`` to re-train the run from that day on
  (that day and every later queued day of the run are queued again in date order, their train
  items reset and chained anew). Push never rewinds the lineage head: when the head is already
  trained through that day, ``--force`` is refused too, pointing to ``batchml lineage reset``.
- Pushing days already queued again is a no-op. A day already covered by a features item of
  the same feature spec (a block, or a one-day item ``features:<spec>:<day>`` of older queues)
  gets no new one: its train item depends on that item. ``--force`` queues the pushed days'
  features again, in new blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchml.errors import ConfigError, DatasetError
from batchml.fraud.data import datasets
from batchml.fraud.features.pipeline import FeatureSpec, feature_days
from batchml.fraud.models.lineage import ModelConfig
from batchml.fraud.models.model import make_model
from batchml.queue.base import Item, ItemSpec, PushOutcome, State, WorkQueue, canonical_json
from batchml.storage import Storage

TRAIN_PRIORITY = 10
#: days per ``fraud.features`` item: a block spans at most this many calendar days
FEATURE_BLOCK_DAYS = 7


def features_id(spec: FeatureSpec, day: str, last: str | None = None) -> str:
    """``features:<spec>:<day>`` for one day, ``features:<spec>:<day>..<last>`` for a block."""
    span = day if last is None or last == day else f"{day}..{last}"
    return f"features:{spec.id}:{span}"


def train_id(run: str, day: str) -> str:
    return f"train:{run}:{day}"


def score_id(run: str, version: int, dataset: str) -> str:
    return f"score:{run}:v{version}:{dataset}"


def features_item(spec: FeatureSpec, day: str, *more: str) -> ItemSpec:
    """The item computing the features of ``day`` (and of the later days ``more``, a block)."""
    payload: dict[str, Any] = {
        "task": "fraud.features",
        "dataset": day,
        "path": datasets.day_path(day),
        "features": spec.to_json(),
    }
    if more:
        payload["days"] = [day, *more]
    last = more[-1] if more else None
    return ItemSpec(payload=payload, id=features_id(spec, day, last))


def feature_blocks(days: Sequence[str], block_days: int = FEATURE_BLOCK_DAYS) -> list[list[str]]:
    """Sorted days cut into blocks spanning at most ``block_days`` calendar days each."""
    blocks: list[list[str]] = []
    for day in sorted(set(days)):
        if (
            blocks
            and (datasets.parse_day(day) - datasets.parse_day(blocks[-1][0])).days < block_days
        ):
            blocks[-1].append(day)
        else:
            blocks.append([day])
    return blocks


def _covering_features(queue: WorkQueue, spec: FeatureSpec) -> dict[str, str]:
    """Day -> id of the queued features item (of ``spec``) that computes it."""
    prefix = features_id(spec, "")
    covered: dict[str, str] = {}
    for item in queue.items():
        if item.id.startswith(prefix) and item.payload.get("task") == "fraud.features":
            for day in feature_days(item.payload):
                covered.setdefault(day, item.id)
    return covered


def _features_plan(
    covering: dict[str, str], spec: FeatureSpec, groups: Sequence[Sequence[str]], force: bool,
    block_days: int,
) -> list[ItemSpec]:  # fmt: skip
    """Features items, in blocks, for the days of each group not in ``covering`` (all of them
    with ``force``); ``covering`` is updated with the new items' ids."""
    specs: list[ItemSpec] = []
    for group in groups:
        todo = [d for d in group if force or d not in covering]
        for block in feature_blocks(todo, block_days):
            item = features_item(spec, *block)
            specs.append(item)
            covering.update({day: features_id(spec, block[0], block[-1]) for day in block})
    return specs


def _queued_train(queue: WorkQueue, run: str) -> dict[str, Item]:
    """The run's train items in the queue, by day."""
    prefix = train_id(run, "")
    return {
        item.id[len(prefix) :]: item
        for item in queue.items()
        if item.id.startswith(prefix) and item.payload.get("task") == "fraud.train"
    }


def run_spec(queue: WorkQueue, run: str) -> FeatureSpec:
    """The features of the run's queued train items (the handbook's for a run with none)."""
    queued = _queued_train(queue, run)
    if not queued:
        return FeatureSpec()
    return FeatureSpec.from_json(queued[min(queued)].payload.get("features"))


def validated_model(model: ModelConfig | None) -> ModelConfig:
    """The model with every parameter spelled out, built once: ConfigError if it is invalid."""
    model = model or ModelConfig()
    try:
        resolved = model.resolved()
        make_model(resolved.kind, dict(resolved.params))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"model {model.kind} {dict(model.params)} is invalid: {exc}; fix --model"
        ) from None
    return resolved


def _settings(model: ModelConfig, spec: FeatureSpec) -> str:
    return f"model {model.kind} {canonical_json(dict(model.params))}, features {spec.id}"


def _run_settings(
    run: str, queued: dict[str, Item], model: ModelConfig | None, spec: FeatureSpec | None
) -> tuple[ModelConfig, FeatureSpec]:
    """The settings of this push: the run's own when it has queued days (another ask is
    refused), else the ones asked for (defaults when none)."""
    asked = (validated_model(model), spec or FeatureSpec()) if model or spec else None
    if not queued:
        return asked or (validated_model(None), FeatureSpec())
    first = queued[min(queued)].payload
    fixed = (
        ModelConfig.from_json(first.get("model")),
        FeatureSpec.from_json(first.get("features")),
    )
    if asked is None:
        return fixed
    mine = (asked[0] if model else fixed[0], asked[1] if spec else fixed[1])
    if mine[0].to_json() != fixed[0].to_json() or mine[1].to_json() != fixed[1].to_json():
        raise ConfigError(
            f"run {run!r} was queued with {_settings(*fixed)}; this push asks for "
            f"{_settings(*mine)}: use another --run (a lineage keeps one model)"
        )
    return fixed


def _first_day(queue: WorkQueue, run: str, queued: dict[str, Item], ordered: list[str],
               force: bool) -> str | None:  # fmt: skip
    """The day the chain is (re)built from: the first new day, or with ``force`` the first
    pushed day; refuses a day that is not after the run's last day unless forced, and a
    forced re-train the lineage head is already past."""
    head = queue.lineage_head(run)
    last = max([*queued, *([head.dataset] if head.dataset else [])], default=None)
    new = [d for d in ordered if d not in queued]
    if not force:
        early = [d for d in new if last is not None and d <= last]
        if early:
            raise ConfigError(
                f"run {run!r}: day {early[0]} is not after the run's last day {last} (queued or "
                f"trained), and a lineage trains its days in date order. Use another --run for "
                f"a new lineage, or --force to re-train run {run!r} from {early[0]} on"
            )
        return new[0] if new else None
    start = ordered[0]
    if head.dataset is not None and head.dataset >= start:
        raise ConfigError(
            f"run {run!r}: its lineage head v{head.version} is already trained through "
            f"{head.dataset}, so re-training from {start} needs the head rewound first: "
            f"`batchml lineage reset`, then push again with --force (or use another --run)"
        )
    for day, item in sorted(queued.items()):
        if day >= start and item.state == State.LEASED:
            raise ConfigError(
                f"run {run!r}: {item.id} is being trained by worker {item.worker} right now; "
                "wait until it ends (or stop the workers), then push again with --force"
            )
    return start


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
    force: bool = False,
    block_days: int = FEATURE_BLOCK_DAYS,
) -> list[ItemSpec]:
    """Items that train the run's lineage on ``days`` in date order (features first).

    ``test`` lists root-relative dataset files to evaluate every version on; ``test_days``
    are stored days used the same way (their features are queued too, ahead of training).
    ``model`` and ``spec`` default to the run's own settings (see the module docstring, which
    also says what is refused with ConfigError); ``force`` is for pushing the items with
    ``force=True``: the run's later queued days are then chained again after ``days``.
    Features come in blocks of ``block_days`` (see the module docstring).
    """
    queued = _queued_train(queue, run)
    model, spec = _run_settings(run, queued, model, spec)
    ordered = sorted(set(days))
    start = _first_day(queue, run, queued, ordered, force) if ordered else None
    if force and start is not None:
        ordered = sorted({*ordered, *(d for d in queued if d >= start)})
    tests = [*test, *(datasets.day_path(d) for d in test_days)]
    held_out = sorted(set(test_days))
    pushed = [d for d in sorted(set(days)) if d not in set(held_out)]
    covering = _covering_features(queue, spec)
    specs = _features_plan(covering, spec, [held_out, pushed], force, block_days)
    uncovered = [d for d in ordered if d not in covering]  # only if its features item vanished
    specs += _features_plan(covering, spec, [uncovered], False, block_days)
    test_deps = tuple(dict.fromkeys(covering[d] for d in held_out))
    earlier = [d for d in queued if ordered and d < ordered[0]]
    previous = train_id(run, max(earlier)) if earlier else None
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
        deps = (covering[day], *test_deps, *((previous,) if previous else ()))
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


def _pushed_days(storage: Storage, pattern: str, start: str | None, end: str | None) -> list[str]:
    """The stored days ``queue push`` would queue; ConfigError naming what is wrong if none:
    a bad day, a range that ends before it starts, or a filter no stored day matches."""
    for option, value in (("--start", start), ("--end", end)):
        if value is not None:
            try:
                datasets.parse_day(value)
            except DatasetError:
                raise ConfigError(
                    f"{option} {value!r} is not a day: write it as YYYY-MM-DD"
                ) from None
    if start is not None and end is not None and start > end:
        raise ConfigError(f"--start {start} is after --end {end}: nothing to push")
    stored = datasets.training_days(storage)
    if not stored:
        raise ConfigError(
            f"no training days under {storage.dataset_dir('training')}; "
            "run `batchml data generate` or `batchml data import` first"
        )
    days = datasets.training_days(storage, pattern, start, end)
    if not days:
        asked = [f"--glob {pattern}"] if pattern != "*" else []
        asked += [f"--start {start}"] if start else []
        asked += [f"--end {end}"] if end else []
        raise ConfigError(
            f"no stored training day matches {' '.join(asked)}: the {len(stored)} stored "
            f"day(s) are {stored[0]} … {stored[-1]}"
        )
    return days


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
    model_kind: str | None = None,
    feature_set: str | None = None,
    force: bool = False,
) -> tuple[list[str], list[PushOutcome]]:
    """Queue the stored training days that match (``queue push``); returns days and outcomes.

    ``test_days`` (``FIRST:LAST``) holds stored days out as the evaluation set of every
    version; ``test`` names dataset files for the same purpose (default: every file in
    datasets/testing/). ``model_kind`` None means the run's own (the default kind for a new
    run); ``feature_set`` likewise (the handbook's for a new run); see :func:`training_items`
    for what is refused."""
    days = _pushed_days(storage, pattern, start, end)
    held_out: list[str] = []
    if test_days:
        first, _, last = test_days.partition(":")
        held_out = datasets.training_days(storage, "*", first, last or first)
        if not held_out:
            raise ConfigError(f"--test-days {test_days}: no stored day in that range")
        days = [d for d in days if d < held_out[0]]
        if not days:
            raise ConfigError(
                f"--test-days {test_days} starts at {held_out[0]}: no stored day of the asked "
                "range is before it to train on; hold out later days"
            )
    if test is None:
        folder = storage.dataset_dir(datasets.TESTING)
        names = sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []
        test = [f"datasets/{datasets.TESTING}/{name}" for name in names]
    for path in test:
        storage.resolve(path, what="--test dataset")
    model = ModelConfig(kind=model_kind) if model_kind else None
    spec = FeatureSpec(feature_set=feature_set) if feature_set else None
    specs = training_items(
        queue, days, run=run, test=test, test_days=held_out, model=model, spec=spec, force=force
    )
    return days, queue.push(specs, force=force)

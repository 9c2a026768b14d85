"""The built-in fraud tasks a worker runs: ``fraud.features``, ``fraud.train``, ``fraud.score``.

Payloads (built by :mod:`batchml.fraud.plan`):

``fraud.features``  ``{"dataset": day, "path": ..., "features": spec}``, and for a block of
                    days ``"days": [day, ...]`` (sorted; ``dataset`` is the first)
``fraud.train``     ``{"run", "dataset", "path", "test": [paths], "model": {...}, "features"}``
``fraud.score``     ``{"run", "dataset", "path", "version": N, "features"}``

Each returns a JSON result; ``seconds`` says where the time went (io, features, train,
evaluate, score), which ``bench/end_to_end.py`` sums up.

Each has a payload validator (``check_*``) that ``queue add`` runs before queueing and the
worker runs again before the task: every path in the payload and every file name made from it
must resolve inside the storage root (else PathEscapeError) and the keys the task reads must be
there with the right type (else PayloadError). Both errors are permanent: the item is refused,
or dead on its first attempt, never retried.

The model and metric modules (scikit-learn, LightGBM: ~1.5 s to import) are imported by the
tasks that use them, so a fresh worker whose first item computes features starts at once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batchml.errors import ConfigError, DatasetError, PayloadError
from batchml.fraud.data import datasets
from batchml.fraud.features import pipeline
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models.kinds import DEFAULT_KIND, known_kinds
from batchml.queue.base import LineageHead
from batchml.storage import Storage
from batchml.tasks.context import TaskContext
from batchml.tasks.registry import task

if TYPE_CHECKING:
    from batchml.fraud.evaluation.protocol import TestSet

log = logging.getLogger("batchml.fraud")


class _Stopwatch:
    """Seconds per kind of work (``seconds``) and, when laps are named, per step (``steps``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.steps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str, step: str | None = None) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 6)
        if step is not None:
            self.steps[step] = round(self.steps.get(step, 0.0) + now - self._t, 6)
        self._t = now


def _path(payload: dict[str, Any]) -> str:
    path = payload.get("path")
    if not isinstance(path, str):
        raise DatasetError(f"item payload has no dataset path: {payload}")
    return path


def _required(payload: dict[str, Any], task_name: str, key: str, kind: type) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
        got = "missing" if key not in payload else f"{type(value).__name__} {value!r}"
        raise PayloadError(f"{task_name} payload: {key!r} must be a {kind.__name__} ({got})")
    return value


def _check_common(
    payload: dict[str, Any], storage: Storage, task_name: str, *, path_required: bool = True
) -> None:
    """The payload's dataset path stays inside the root; its feature spec parses."""
    if path_required or "path" in payload:
        storage.resolve(_required(payload, task_name, "path", str), what="dataset path")
    try:
        FeatureSpec.from_json(payload.get("features"))
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"{task_name} payload: 'features' is no feature spec ({exc})") from None


#: the most days one ``fraud.features`` item may compute (its memory grows with its days)
MAX_FEATURE_DAYS = 62


def check_features(payload: dict[str, Any], storage: Storage) -> None:
    """``fraud.features``: a day (YYYY-MM-DD), optionally ``days`` (sorted distinct days, the
    first being ``dataset``, at most MAX_FEATURE_DAYS), an optional confined path, a spec."""
    _check_common(payload, storage, "fraud.features", path_required=False)
    day = _required(payload, "fraud.features", "dataset", str)
    try:
        datasets.parse_day(day)
    except DatasetError as exc:
        raise PayloadError(f"fraud.features payload: 'dataset' {exc}") from None
    if "days" not in payload:
        return
    days = payload["days"]
    if (
        not isinstance(days, list)
        or not 1 <= len(days) <= MAX_FEATURE_DAYS
        or not all(isinstance(d, str) for d in days)
        or days != sorted(set(days))
        or days[0] != day
    ):
        raise PayloadError(
            f"fraud.features payload: 'days' must list 1 to {MAX_FEATURE_DAYS} sorted distinct "
            f"days starting with 'dataset' {day!r}, not {days!r}"
        )
    for other in days:
        try:
            datasets.parse_day(other)
        except DatasetError as exc:
            raise PayloadError(f"fraud.features payload: 'days' {exc}") from None


def check_train(payload: dict[str, Any], storage: Storage) -> None:
    """``fraud.train``: confined dataset and test paths, a dataset name that makes a confined
    checkpoint path, a known model kind, a feature spec."""
    _check_common(payload, storage, "fraud.train")
    tests = payload.get("test") or []
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise PayloadError(f"fraud.train payload: 'test' must be a list of paths, not {tests!r}")
    for path in tests:
        storage.resolve(path, what="test dataset")
    day = _required(payload, "fraud.train", "dataset", str)
    run = str(payload.get("run", "default"))  # the checkpoint's name, as lineage makes it:
    storage.resolve(storage.run_path(run, "checkpoints", f"v0001-{day}.npz"), what="dataset")
    model = payload.get("model") or {}
    kind = model.get("kind", DEFAULT_KIND) if isinstance(model, dict) else None
    if kind not in known_kinds():
        raise PayloadError(
            f"fraud.train payload: 'model' must name a kind of {', '.join(known_kinds())}, "
            f"not {model!r}"
        )


def check_score(payload: dict[str, Any], storage: Storage) -> None:
    """``fraud.score``: a confined dataset path, a lineage version, a dataset name that makes
    a confined predictions path, a feature spec."""
    _check_common(payload, storage, "fraud.score")
    name = _required(payload, "fraud.score", "dataset", str)
    version = _required(payload, "fraud.score", "version", int)
    run = str(payload.get("run", "default"))
    storage.resolve(prediction_path(storage, run, version, name), what="predictions path")


@task(validate=check_features)
def features_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Compute the feature tables of the item's day(s) in one pass and publish them to the cache.

    A one-day item fails on its day's DatasetError, as it always did. A block publishes its
    readable days and lists the others under ``invalid`` (each such day's train item then
    fails on it by itself, so the lineage still stops exactly before that day)."""
    spec = FeatureSpec.from_json(payload.get("features"))
    days = pipeline.feature_days(payload)
    clock = _Stopwatch()
    computed = pipeline.compute_days(ctx.storage, days, spec)
    if len(days) == 1 and days[0] in computed.invalid:
        raise computed.invalid[days[0]]
    clock.lap("features")
    ctx.check()
    per_day = _stage_tables(ctx, spec, computed.tables)
    invalid = computed.invalid
    del computed
    pipeline.release_memory()  # the block's rows and arrays: a worker's peak is what it holds
    clock.lap("io")
    if len(days) == 1:
        return {**per_day[days[0]], "seconds": clock.seconds}
    for day, error in invalid.items():
        log.warning("%s: features of %s not computed: %s", ctx.item.id, day, error)
    return {
        "days": per_day,
        "invalid": {day: str(error) for day, error in invalid.items()},
        "seconds": clock.seconds,
    }


def _stage_tables(
    ctx: TaskContext, spec: FeatureSpec, tables: dict[str, pa.Table]
) -> dict[str, dict[str, int]]:
    """Stage each day's feature table for the cache; its rows and frauds, per day."""
    per_day: dict[str, dict[str, int]] = {}
    for day, table in tables.items():
        ctx.output(spec.cache_path(day)).write_bytes(pipeline.arrow_to_bytes(table))
        frauds = pc.sum(table.column(pipeline.LABEL)).as_py() or 0
        per_day[day] = {"rows": table.num_rows, "frauds": int(frauds)}
    return per_day


def _test_metrics(
    test: TestSet, scores: np.ndarray, top_k: int, tests: list[str]
) -> dict[str, Any]:
    """The protocol's metrics of one version's scores on the item's test datasets."""
    return {**test.metrics(scores, top_k), "datasets": tests, "test_days": list(test.days)}


@task(validate=check_train)
def train_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Warm-start the run's head model on one dataset and propose the next lineage version.

    The result holds the new version's metrics on its own training day (``train``: for a
    model with a replay memory, measured on the day's rows it kept, weighted, see
    :func:`~batchml.fraud.evaluation.metrics.train_metrics`) and, when the item names test
    datasets, on them with the evaluation protocol (``test``), and where the time went
    (``seconds``: io, features, train, evaluate; ``steps``: load checkpoint, load features,
    grow trees, metrics, test set, evaluation, save checkpoint, publish)."""
    from batchml.fraud.evaluation import metrics, test_cache
    from batchml.fraud.evaluation.protocol import version_protocol
    from batchml.fraud.models import lineage
    from batchml.fraud.models.model_base import CLASSES

    spec = FeatureSpec.from_json(payload.get("features"))
    config = lineage.ModelConfig.from_json(payload.get("model"))
    day = str(payload["dataset"])
    clock = _Stopwatch()
    head = ctx.lineage_head()
    model = lineage.continue_head(ctx.storage, head, config, spec.inputs)
    clock.lap("io", "load checkpoint")
    table = pipeline.load_dataset_features(ctx.storage, _path(payload), spec)
    X, y = pipeline.xy(table, spec)
    clock.lap("features", "load features")
    model.partial_fit(X, y, classes=CLASSES)  # version 0 is unfitted: classes are needed
    clock.lap("train", "grow trees")
    ctx.check()
    version = head.version + 1
    result: dict[str, Any] = {"dataset": day, "version": version}
    result["train"] = metrics.train_metrics(model, X, y)
    clock.lap("evaluate", "metrics")
    final = lineage.checkpoint_path(ctx.storage, ctx.run, version, day)
    data, digest = lineage.save_bytes(
        model,
        spec.inputs,
        {"run": ctx.run, "version": version, "dataset": day, "parent": head.params_digest},
    )
    clock.lap("io", "save checkpoint")
    tests = [str(p) for p in payload.get("test") or []]
    if tests:
        protocol = version_protocol(spec)
        test = test_cache.get(ctx.storage, tests, spec, protocol)
        clock.lap("features", "test set")
        ctx.check()
        scores = test_cache.scores(test, model, head.params_digest, digest)
        result["test"] = _test_metrics(test, scores, protocol.top_k, tests)
        clock.lap("evaluate", "evaluation")
    ctx.output(final).write_bytes(data)
    pub = ctx.publication(final)
    ctx.output(final + ".sha256").write_text(f"{pub.sha256}  {final.rsplit('/', 1)[-1]}\n")
    lineage.keep(model, spec.inputs, pub.sha256)  # the next step may continue it in memory
    clock.lap("io", "publish")
    ctx.advance_lineage(
        head.version,
        LineageHead(
            run=ctx.run,
            version=version,
            checkpoint=pub,
            dataset=day,
            item_id=ctx.item.id,
            params_digest=digest,
        ),
    )
    result.update(
        model=config.kind, checkpoint=final, sha256=pub.sha256, params_digest=digest,
        parent_version=head.version, seconds=clock.seconds, steps=clock.steps,
    )  # fmt: skip
    return result


def prediction_path(storage: Storage, run: str, version: int, name: str) -> str:
    """Where the predictions of lineage ``version`` for dataset ``name`` are published."""
    return storage.run_path(run, "predictions", f"v{version:04d}", f"{name}.parquet")


def _pinned(ctx: TaskContext, version: int) -> LineageHead:
    for head in ctx.queue.lineage(ctx.run):
        if head.version == version:
            return head
    raise ConfigError(f"run {ctx.run!r} has no lineage version {version} to score with")


@task(validate=check_score)
def score_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Score one dataset with a pinned lineage version; publish its predictions file.

    ``<root>/runs/<run>/predictions/v<NNNN>/<name>.parquet`` holds TRANSACTION_ID, SCORE (the
    fraud probability) and MODEL_VERSION, in the dataset's row order. The model is the one the
    version's checkpoint records, so the file depends only on the dataset and the version:
    scoring again gives the same bytes. The version is part of the path because every
    published file has exactly one owning item: scoring a day with v3 and later with v10 makes
    two files, never one file claimed by two commits."""
    from batchml.fraud.evaluation import metrics
    from batchml.fraud.models import lineage
    from batchml.fraud.models.model_base import fraud_scores

    spec = FeatureSpec.from_json(payload.get("features"))
    name = str(payload["dataset"])
    clock = _Stopwatch()
    head = _pinned(ctx, int(payload["version"]))
    model, meta = lineage.load_version(ctx.storage, head, spec.inputs)
    clock.lap("io")
    table = pipeline.load_dataset_features(ctx.storage, _path(payload), spec)
    clock.lap("features")
    X, y = pipeline.xy(table, spec)
    scores = fraud_scores(model, X)
    clock.lap("score")
    ctx.check()
    out = pd.DataFrame(
        {
            "TRANSACTION_ID": table["TRANSACTION_ID"].to_numpy(dtype=np.int64),
            "SCORE": np.asarray(scores, dtype=np.float64),
            "MODEL_VERSION": np.full(len(table), head.version, dtype=np.int64),
        }
    )
    final = prediction_path(ctx.storage, ctx.run, head.version, name)
    ctx.output(final).write_bytes(pipeline.table_to_bytes(out))
    clock.lap("io")
    return {
        "dataset": name,
        "version": head.version,
        "model": meta.get("kind"),
        "trained_through": head.dataset,
        "rows": len(out),
        "predictions": final,
        "checkpoint_sha256": head.checkpoint.sha256 if head.checkpoint else None,
        "metrics": metrics.summary(y, scores),
        "seconds": clock.seconds,
    }


__all__ = [
    "check_features",
    "check_score",
    "check_train",
    "features_task",
    "prediction_path",
    "score_task",
    "train_task",
]

"""The built-in fraud tasks a worker runs: ``fraud.features``, ``fraud.train``, ``fraud.score``.

Payloads (built by :mod:`batchml.fraud.plan`):

``fraud.features``  ``{"dataset": day, "path": ..., "features": spec}``
``fraud.train``     ``{"run", "dataset", "path", "test": [paths], "model": {...}, "features"}``
``fraud.score``     ``{"run", "dataset", "path", "version": N, "features"}``
"""

from __future__ import annotations

import time
from typing import Any

from batchml.errors import ConfigError, DatasetError
from batchml.fraud import lineage, metrics, pipeline
from batchml.fraud.pipeline import FeatureSpec
from batchml.queue.base import LineageHead
from batchml.tasks.context import TaskContext


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 6)
        self._t = now


def _path(payload: dict[str, Any]) -> str:
    path = payload.get("path")
    if not isinstance(path, str):
        raise DatasetError(f"item payload has no dataset path: {payload}")
    return path


def features_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Compute one day's feature table and publish it to the cache."""
    spec = FeatureSpec.from_json(payload.get("features"))
    day = str(payload["dataset"])
    clock = _Stopwatch()
    table = pipeline.compute_day(ctx.storage, day, spec)
    clock.lap("features")
    ctx.check()
    ctx.output(spec.cache_path(day)).write_bytes(pipeline.table_to_bytes(table))
    clock.lap("io")
    return {
        "rows": len(table),
        "frauds": int(table[pipeline.LABEL].sum()),
        "seconds": clock.seconds,
    }


def train_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Warm-start the run's head model on one dataset and propose the next lineage version."""
    spec = FeatureSpec.from_json(payload.get("features"))
    config = lineage.ModelConfig.from_json(payload.get("model"))
    day = str(payload["dataset"])
    clock = _Stopwatch()
    head = ctx.lineage_head()
    model, _ = lineage.load_head(ctx.storage, head, config, spec.inputs)
    clock.lap("io")
    table = pipeline.load_dataset_features(ctx.storage, _path(payload), spec)
    clock.lap("features")
    X, y = pipeline.xy(table, spec)
    model.partial_fit(X, y)
    clock.lap("train")
    ctx.check()
    result: dict[str, Any] = {"dataset": day, "version": head.version + 1}
    result["train"] = metrics.summary(y, model.predict_proba(X))
    tests = [str(p) for p in payload.get("test") or []]
    if tests:
        test_table = pipeline.load_many(ctx.storage, tests, spec)
        clock.lap("features")
        Xt, yt = pipeline.xy(test_table, spec)
        result["test"] = {**metrics.summary(yt, model.predict_proba(Xt)), "datasets": tests}
        clock.lap("evaluate")
    version = head.version + 1
    final = lineage.checkpoint_path(ctx.storage, ctx.run, version, day)
    data, digest = lineage.save_bytes(
        model,
        spec.inputs,
        {"run": ctx.run, "version": version, "dataset": day, "parent": head.params_digest},
    )
    ctx.output(final).write_bytes(data)
    pub = ctx.publication(final)
    ctx.output(final + ".sha256").write_text(f"{pub.sha256}  {final.rsplit('/', 1)[-1]}\n")
    clock.lap("io")
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
        checkpoint=final, sha256=pub.sha256, params_digest=digest, parent_version=head.version,
        seconds=clock.seconds,
    )  # fmt: skip
    return result


def score_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Score one dataset with a pinned lineage version; publish its predictions file."""
    spec = FeatureSpec.from_json(payload.get("features"))
    config = lineage.ModelConfig.from_json(payload.get("model"))
    version = int(payload["version"])
    versions = {h.version: h for h in ctx.queue.lineage(ctx.run)}
    if version not in versions:
        raise ConfigError(f"run {ctx.run!r} has no lineage version {version} to score with")
    head = versions[version]
    model, _ = lineage.load_head(ctx.storage, head, config, spec.inputs)
    table = pipeline.load_dataset_features(ctx.storage, _path(payload), spec)
    X, y = pipeline.xy(table, spec)
    scores = model.predict_proba(X)
    out = table[["TRANSACTION_ID"]].copy()
    out["SCORE"] = scores
    out["MODEL_VERSION"] = version
    name = str(payload["dataset"])
    final = ctx.storage.run_path(ctx.run, "predictions", f"{name}.parquet")
    ctx.output(final).write_bytes(pipeline.table_to_bytes(out))
    return {"dataset": name, "version": version, "rows": len(out), "predictions": final,
            "checkpoint_sha256": head.checkpoint.sha256 if head.checkpoint else None,
            "test": metrics.summary(y, scores)}  # fmt: skip


__all__ = ["features_task", "score_task", "train_task"]

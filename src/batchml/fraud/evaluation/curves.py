"""ROC and precision–recall curves of one lineage version, for the HTML report.

The version is named by the record of the training step that made it (its ``lineage`` head and
its payload), so the curves are computed from the records and the storage alone. The model is
scored on the same test set that step recorded its test metrics on (the test datasets less the
known compromised cards, :func:`batchml.fraud.evaluation.protocol.load_test_set`), so the areas
under these curves are the ``test.roc_auc`` and ``test.average_precision`` of ``report.json``.

Curves are thinned to at most ``points`` points for drawing; the areas are computed on the full
curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from batchml.fraud.evaluation import metrics
from batchml.fraud.evaluation.protocol import load_test_set, version_protocol
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import lineage
from batchml.fraud.models.model_base import fraud_scores
from batchml.queue.base import LineageHead
from batchml.storage import Storage


def thin(xs: np.ndarray, ys: np.ndarray, points: int) -> list[list[float]]:
    """At most ``points`` (x, y) pairs spread evenly along the curve's length, both ends kept,
    rounded to 5 decimals (a curve that jumps keeps its shape, unlike every n-th point)."""
    if len(xs) > points:
        length = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(xs)) + np.abs(np.diff(ys)))])
        targets = np.linspace(0.0, length[-1], points)
        keep = np.unique(np.searchsorted(length, targets).clip(0, len(xs) - 1))
        keep = np.union1d(keep, [0, len(xs) - 1])
        xs, ys = xs[keep], ys[keep]
    return [[round(float(x), 5), round(float(y), 5)] for x, y in zip(xs, ys, strict=True)]


def version_curves(
    storage: Storage, record: dict[str, Any], *, points: int = 200, top_k: int = 100
) -> dict[str, Any] | None:
    """Curves of the version a ``fraud.train`` record made, or None if it has no test set."""
    payload = record.get("payload") or {}
    tests = [str(p) for p in payload.get("test") or []]
    if record.get("task") != "fraud.train" or not record.get("lineage") or not tests:
        return None
    head = LineageHead.from_json(record["lineage"])
    spec = FeatureSpec.from_json(payload.get("features"))
    config = lineage.ModelConfig.from_json(payload.get("model"))
    model, _ = lineage.load_head(storage, head, config, spec.inputs)
    test = load_test_set(storage, tests, spec, version_protocol(spec))  # as the train task's
    y = test.y
    scores = fraud_scores(model, test.X)
    result: dict[str, Any] = {
        "version": head.version,
        "dataset": head.dataset,
        "datasets": tests,
        "rows": len(y),
        "frauds": int(np.sum(y)),
        "roc_auc": metrics.roc_auc(y, scores),
        "average_precision": metrics.average_precision(y, scores),
        "card_precision_at_k": metrics.card_precision_at_k(
            test.day, test.card, test.y, scores, top_k
        ),
        "top_k": top_k,
        "fraud_share": float(np.mean(y)) if len(y) else None,
        "roc": [],
        "pr": [],
    }
    if result["roc_auc"] is not None:
        fpr, tpr, _ = roc_curve(y, scores)
        result["roc"] = thin(fpr, tpr, points)
    if result["average_precision"] is not None:
        precision, recall, _ = precision_recall_curve(y, scores)
        result["pr"] = thin(recall[::-1], precision[::-1], points)
    return result

"""Evaluating a lineage version with the Fraud Detection Handbook's protocol.

Labels arrive late: a transaction's fraud label is known ``delay`` days after it happened. A
model trained through day L is therefore tested on the ``test_days`` days starting at
``L + delay + 1``. On each test day T, cards already known to be compromised (a fraud on some
day up to ``T - delay - 1``, training period included) are removed from the test set: they
would already be blocked, and finding them again is no achievement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from batchml.errors import ConfigError, DatasetError
from batchml.fraud import datasets, lineage, metrics, pipeline
from batchml.fraud.pipeline import FeatureSpec
from batchml.queue.base import LineageHead, WorkQueue
from batchml.storage import Storage


@dataclass(frozen=True)
class Protocol:
    test_start: str | None = None  # default: last trained day + delay + 1
    test_days: int = 7
    delay: int = 7
    top_k: int = 100


def pick_version(
    queue: WorkQueue, run: str, version: int | None
) -> tuple[LineageHead, list[LineageHead]]:
    chain = queue.lineage(run)
    if not chain:
        raise ConfigError(f"run {run!r} has no trained version; run the workers first")
    if version is None:
        return chain[-1], chain
    for head in chain:
        if head.version == version:
            return head, chain[: chain.index(head) + 1]
    raise ConfigError(f"run {run!r} has no version {version} (head is v{chain[-1].version})")


def _known_compromised(
    storage: Storage, first_day: str, test_days: list[str], delay: int
) -> dict[str, set[int]]:
    """Per test day, the cards with a fraud on a stored day from ``first_day`` to T - delay - 1."""
    last_needed = (datasets.parse_day(test_days[-1]) - timedelta(days=delay + 1)).isoformat()
    days = datasets.training_days(storage, "*", first_day, last_needed)
    frauds = datasets.load_days(storage, days)
    frauds = frauds.loc[frauds["TX_FRAUD"] == 1, ["TX_DATETIME", "CUSTOMER_ID"]]
    fraud_day = frauds["TX_DATETIME"].dt.strftime("%Y-%m-%d")
    known: dict[str, set[int]] = {}
    for day in test_days:
        cutoff = (datasets.parse_day(day) - timedelta(days=delay + 1)).isoformat()
        known[day] = set(frauds.loc[fraud_day <= cutoff, "CUSTOMER_ID"].tolist())
    return known


def evaluate(
    storage: Storage,
    queue: WorkQueue,
    run: str,
    *,
    version: int | None = None,
    protocol: Protocol | None = None,
    model: lineage.ModelConfig | None = None,
    spec: FeatureSpec | None = None,
) -> dict[str, Any]:
    """Metrics of a lineage version (default: the head) on the protocol's test period."""
    protocol = protocol or Protocol()
    spec = spec or FeatureSpec()
    head, chain = pick_version(queue, run, version)
    trained = sorted(h.dataset for h in chain if h.dataset)
    start = (
        protocol.test_start
        or (datasets.parse_day(trained[-1]) + timedelta(days=protocol.delay + 1)).isoformat()
    )
    wanted = [
        (datasets.parse_day(start) + timedelta(days=i)).isoformat()
        for i in range(protocol.test_days)
    ]
    test_days = [d for d in wanted if storage.exists(datasets.day_path(d))]
    if not test_days:
        raise DatasetError(
            f"no stored day in the test period {wanted[0]} … {wanted[-1]}; generate or import "
            "those days, or pass --test-start"
        )
    if test_days[0] <= trained[-1]:
        raise ConfigError(
            f"the test period starts {test_days[0]}, on or before the last trained day "
            f"{trained[-1]}: that would test on training data"
        )
    config = model or _model_config(storage, head)
    estimator, _ = lineage.load_head(storage, head, config, spec.inputs)
    table = pipeline.load_many(storage, [datasets.day_path(d) for d in test_days], spec)
    day_of_tx = table["TX_DATETIME"].dt.strftime("%Y-%m-%d")
    known = _known_compromised(storage, trained[0], test_days, protocol.delay)
    keep = np.ones(len(table), dtype=bool)
    for day in test_days:
        keep &= ~((day_of_tx == day) & table["CUSTOMER_ID"].isin(known[day])).to_numpy()
    table, day_of_tx = table[keep].reset_index(drop=True), day_of_tx[keep].reset_index(drop=True)
    X, y = pipeline.xy(table, spec)
    scores = estimator.predict_proba(X)
    result = metrics.summary(y, scores)
    result["card_precision_at_k"] = metrics.card_precision_at_k(
        day_of_tx, table["CUSTOMER_ID"], table["TX_FRAUD"], scores, protocol.top_k
    )
    return {
        "run": run,
        "version": head.version,
        "trained_days": len(trained),
        "trained_through": trained[-1],
        "test_days": test_days,
        "delay": protocol.delay,
        "top_k": protocol.top_k,
        "excluded_known_compromised": int((~keep).sum()),
        "metrics": result,
    }


def _model_config(storage: Storage, head: LineageHead) -> lineage.ModelConfig:
    """The model kind and parameters recorded in the head's checkpoint."""
    from batchml.fraud import checkpoint

    assert head.checkpoint is not None
    _, meta = checkpoint.load_file(storage.publish(head.checkpoint), head.checkpoint.sha256)
    return lineage.ModelConfig(kind=meta["kind"], params=tuple(sorted(meta["params"].items())))

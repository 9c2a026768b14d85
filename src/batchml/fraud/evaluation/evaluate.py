"""Evaluating a lineage version with the Fraud Detection Handbook's protocol.

The protocol itself (test period after the label delay, removal of known compromised cards,
the metrics) is :mod:`batchml.fraud.evaluation.protocol`; this module picks the version, checks
that the test period really comes after what the version has learnt, and scores it.
"""

from __future__ import annotations

from typing import Any

from batchml.errors import ConfigError, DatasetError
from batchml.fraud.data import datasets
from batchml.fraud.evaluation.protocol import Protocol, load_test_set, shift
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import lineage
from batchml.queue.base import LineageHead, WorkQueue
from batchml.storage import Storage

__all__ = ["Protocol", "evaluate", "pick_version"]


def pick_version(
    queue: WorkQueue, run: str, version: int | None
) -> tuple[LineageHead, list[LineageHead]]:
    """A lineage version (default: the head) and the chain up to it."""
    chain = queue.lineage(run)
    if not chain:
        raise ConfigError(f"run {run!r} has no trained version; run the workers first")
    if version is None:
        return chain[-1], chain
    for head in chain:
        if head.version == version:
            return head, chain[: chain.index(head) + 1]
    raise ConfigError(f"run {run!r} has no version {version} (head is v{chain[-1].version})")


def _test_days(storage: Storage, trained_through: str, protocol: Protocol) -> list[str]:
    """The stored days of the protocol's test period, refused if labels would leak into it."""
    wanted = protocol.period(trained_through)
    earliest = shift(trained_through, protocol.delay + 1)
    if wanted[0] < earliest:
        raise ConfigError(
            f"the test period starts {wanted[0]}, but the model learnt labels up to "
            f"{trained_through}, which are only known {protocol.delay} days later: start the "
            f"test on {earliest} or later (--test-start), or lower --delay"
        )
    days = [d for d in wanted if storage.exists(datasets.day_path(d))]
    if not days:
        raise DatasetError(
            f"no stored day in the test period {wanted[0]} … {wanted[-1]}; generate or import "
            "those days, or pass --test-start"
        )
    return days


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
    test_days = _test_days(storage, trained[-1], protocol)
    if model is None:
        estimator, meta = lineage.load_version(storage, head, spec.inputs)
        config = lineage.ModelConfig(
            kind=meta["kind"], params=tuple(sorted(meta["params"].items()))
        )
    else:
        config = model
        estimator, _ = lineage.load_head(storage, head, config, spec.inputs)
    test = load_test_set(storage, [datasets.day_path(d) for d in test_days], spec, protocol)
    result = test.metrics(estimator.predict_proba(test.X), protocol.top_k)
    return {
        "run": run,
        "version": head.version,
        "model": config.to_json(),
        "trained_days": len(trained),
        "trained_through": trained[-1],
        "test_days": test_days,
        "protocol": protocol.to_json(),
        "delay": protocol.delay,
        "top_k": protocol.top_k,
        "excluded_known_compromised": test.excluded,
        "metrics": result,
    }

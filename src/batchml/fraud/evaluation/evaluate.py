"""Evaluating a lineage version with the Fraud Detection Handbook's protocol.

The protocol itself (test period after the label delay, removal of known compromised cards,
the metrics) is :mod:`batchml.fraud.evaluation.protocol`; this module picks the version, checks
that the test period really comes after what the version has learnt, and scores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchml.errors import ConfigError, DatasetError
from batchml.fraud.data import datasets
from batchml.fraud.evaluation.protocol import Protocol, load_test_set, shift
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import lineage
from batchml.fraud.models.model_base import fraud_scores
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
        stored = datasets.training_days(storage)
        last = f" (the last stored day is {stored[-1]})" if stored else ""
        raise DatasetError(
            f"no stored day in the test period {wanted[0]} … {wanted[-1]}{last}: the model "
            f"is trained through {trained_through} and is tested {protocol.delay} days later "
            "(--delay). Keep days out of training (`queue push --end`), generate or import "
            "those days, or evaluate on a stored file with --test datasets/testing/NAME.parquet"
        )
    return days


def _test_file_days(
    storage: Storage, relpaths: Sequence[str], trained: list[str]
) -> dict[str, list[str]]:
    """The days each test file holds; refused if one holds a day the model trained on."""
    out: dict[str, list[str]] = {}
    for relpath in relpaths:
        storage.resolve(relpath, what="--test dataset")
        if not storage.exists(relpath):
            raise DatasetError(
                f"--test {relpath}: no such dataset under {storage.root}; `batchml data list` "
                "shows the testing files (datasets/testing/NAME.parquet)"
            )
        table = datasets.read_parquet(storage, relpath)
        days = sorted(set(table["TX_DATETIME"].dt.strftime("%Y-%m-%d")))
        seen = sorted(set(days) & set(trained))
        if seen:
            raise ConfigError(
                f"--test {relpath} holds {len(seen)} day(s) the model was trained on "
                f"({seen[0]} …): its labels were learnt; test on days after {trained[-1]}"
            )
        out[relpath] = days
    return out


def evaluate(
    storage: Storage,
    queue: WorkQueue,
    run: str,
    *,
    version: int | None = None,
    protocol: Protocol | None = None,
    model: lineage.ModelConfig | None = None,
    spec: FeatureSpec | None = None,
    test: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of a lineage version (default: the head) on the protocol's test period, or,
    with ``test``, on those stored dataset files (root-relative, e.g. the tutorial's
    ``datasets/testing/test_dataset.parquet``): they must hold no day the version trained on;
    known compromised cards are removed by the same rules."""
    protocol = protocol or Protocol()
    spec = spec or FeatureSpec()
    head, chain = pick_version(queue, run, version)
    trained = sorted(h.dataset for h in chain if h.dataset)
    files: dict[str, list[str]] = {}
    if test:
        files = _test_file_days(storage, test, trained)
        test_days = sorted({d for days in files.values() for d in days})
        relpaths = list(files)
    else:
        test_days = _test_days(storage, trained[-1], protocol)
        relpaths = [datasets.day_path(d) for d in test_days]
    if model is None:
        estimator, meta = lineage.load_version(storage, head, spec.inputs)
        config = lineage.ModelConfig(
            kind=meta["kind"], params=tuple(sorted(meta["params"].items()))
        )
    else:
        config = model
        estimator, _ = lineage.load_head(storage, head, config, spec.inputs)
    test_set = load_test_set(storage, relpaths, spec, protocol)
    result = test_set.metrics(fraud_scores(estimator, test_set.X), protocol.top_k)
    return {
        "run": run,
        "version": head.version,
        "model": config.to_json(),
        "trained_days": len(trained),
        "trained_through": trained[-1],
        "test_days": test_days,
        "test_files": relpaths if files else [],
        "protocol": protocol.to_json(),
        "delay": protocol.delay,
        "top_k": protocol.top_k,
        "excluded_known_compromised": test_set.excluded,
        "metrics": result,
    }

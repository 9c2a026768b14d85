"""The end-to-end benchmark's reference: the same work as a queue run, in one bare process.

It computes the features of the training and test days once (one pass over the stored days),
then trains the same lineage in memory, day after day, evaluating every version on the test
days with the handbook's protocol, as the ``fraud.train`` items do; no queue, no checkpoints,
no records. It prints one JSON line: its wall time, peak RSS and the final params digest,
which must equal the queue run's head (bench/end_to_end.py asserts it).

    .venv/bin/python bench/bare_reference.py --root ROOT --train FIRST:LAST --test FIRST:LAST
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import pandas as pd

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.evaluation import metrics
from batchml.fraud.evaluation import test_cache as test_sets
from batchml.fraud.evaluation.protocol import (
    build_test_set,
    known_fraud_days,
    load_frauds,
    version_protocol,
)
from batchml.fraud.features import pipeline
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import checkpoint
from batchml.fraud.models.model import make_model
from batchml.fraud.models.model_base import CLASSES
from batchml.storage import Storage


def bare_run(storage: Storage, train: list[str], test: list[str]) -> dict[str, object]:
    spec = FeatureSpec()
    config = plan.validated_model(None)
    started = time.perf_counter()
    computed = pipeline.compute_days(storage, [*train, *test], spec)
    if computed.invalid:
        raise SystemExit(f"invalid days: {sorted(computed.invalid)}")
    tables = {day: computed.frame(day) for day in computed.tables}
    protocol = version_protocol(spec)
    first, last = known_fraud_days(protocol, test)
    frauds = load_frauds(storage, first, last)  # the frauds known during the test days
    test_set = build_test_set(
        pd.concat([tables[d] for d in test], ignore_index=True), frauds, spec, protocol.delay
    )
    features_seconds = time.perf_counter() - started
    model = make_model(config.kind, dict(config.params))
    last_metrics: dict[str, object] = {}
    for version, day in enumerate(train, start=1):
        X, y = pipeline.xy(tables[day], spec)
        model.partial_fit(X, y, classes=CLASSES)  # as the fraud.train task does
        metrics.train_metrics(model, X, y)  # as the train task measures a version
        scores = test_sets.scores(test_set, model, str(version - 1), str(version))
        last_metrics = test_set.metrics(scores, protocol.top_k)
    return {
        "seconds": time.perf_counter() - started,
        "features_seconds": features_seconds,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_digest": checkpoint.params_digest(model.get_state()),
        "versions": len(train),
        "test": {k: last_metrics[k] for k in ("roc_auc", "average_precision")},
    }


def _days(storage: Storage, span: str) -> list[str]:
    first, _, last = span.partition(":")
    return datasets.training_days(storage, "*", first, last or first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--train", required=True, help="FIRST:LAST training days")
    parser.add_argument("--test", required=True, help="FIRST:LAST test days")
    args = parser.parse_args()
    storage = Storage(args.root)
    print(json.dumps(bare_run(storage, _days(storage, args.train), _days(storage, args.test))))


if __name__ == "__main__":
    main()

"""Test sets kept in memory between the train items a worker process runs.

Every version of a lineage is assessed on the same test datasets: without a memo, each train
step would read and filter the whole test period again (seven feature tables plus the raw
days of the known-compromised window). A worker keeps the last few test sets it built, keyed
by the storage root, the datasets, the feature set and the protocol, and by a fingerprint of
the files they come from (size and modification time of each test dataset and of the
training folder, which changes whenever a day is added or replaced). A changed file is a
different key, so the memo never serves stale rows.

Scores, too: for an :class:`~batchml.fraud.models.model_base.AdditiveModel` (boosted trees), the raw
scores of the version just assessed are kept, and the next version — whose parent it is, as the
checkpoints' params digests tell — adds only its newest part instead of running every tree on
every test row again. The sum is taken part by part from zero either way, so a worker that
starts cold computes the very same floats.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batchml.fraud.data import datasets
from batchml.fraud.evaluation.protocol import Protocol, TestSet, load_test_set
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models.model_base import AdditiveModel, fraud_scores
from batchml.storage import Storage

MAX_ENTRIES = 2

_Key = tuple[object, ...]
_memo: OrderedDict[_Key, TestSet] = OrderedDict()


def _stamp(path: os.PathLike[str] | str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _key(storage: Storage, relpaths: Sequence[str], spec: FeatureSpec, protocol: Protocol) -> _Key:
    files = tuple((p, _stamp(storage.resolve(p, what="test dataset"))) for p in relpaths)
    folder = _stamp(storage.dataset_dir(datasets.TRAINING))
    return (str(storage.root), files, folder, spec, protocol)


def get(
    storage: Storage, relpaths: Sequence[str], spec: FeatureSpec, protocol: Protocol
) -> TestSet:
    """The protocol's test set of ``relpaths``, built once per process while files are unchanged."""
    key = _key(storage, relpaths, spec, protocol)
    if key in _memo:
        _memo.move_to_end(key)
        return _memo[key]
    test = load_test_set(storage, relpaths, spec, protocol)
    _memo[key] = test
    while len(_memo) > MAX_ENTRIES:
        _memo.popitem(last=False)
    return test


@dataclass(frozen=True)
class _Raw:
    test: TestSet
    digest: str
    parts: int
    raw: np.ndarray


_raw: OrderedDict[int, _Raw] = OrderedDict()


def scores(test: TestSet, model: Any, parent_digest: str | None, digest: str) -> np.ndarray:
    """Fraud scores of ``model`` (params digest ``digest``) on ``test``.

    An additive model continues from the raw scores of its parent version when this process
    computed them; otherwise it sums all its parts. Either way the same floats come out."""
    if not isinstance(model, AdditiveModel):
        return fraud_scores(model, test.X)
    kept = _raw.get(id(test))
    if kept is not None and kept.test is test and kept.digest == parent_digest:
        raw, done = kept.raw.copy(), kept.parts
    else:
        raw, done = np.zeros(len(test.y)), 0
    for part in range(done, model.parts()):
        raw += model.raw_part(test.X, part)
    _raw[id(test)] = _Raw(test, digest, model.parts(), raw)
    _raw.move_to_end(id(test))
    while len(_raw) > MAX_ENTRIES:
        _raw.popitem(last=False)
    if model.parts() == 0:  # no tree yet: the model's constant score
        return fraud_scores(model, test.X)
    return model.probability(raw)


def clear() -> None:
    """Forget every test set and kept score (tests use it to measure a cold start)."""
    _memo.clear()
    _raw.clear()

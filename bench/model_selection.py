"""Benchmark: choose the fraud model by measurement, then report it on the handbook's test week.

Every candidate is an :class:`~batchml.fraud.models.model_base.IncrementalModel` (a model kind
and its parameters), warm-started one day after another exactly as a lineage is, on the standard
simulated data (``SimulationConfig()``: 5,000 customers, 10,000 terminals, 183 days from
2018-04-01, seed 0) with the handbook's 15 inputs (``--features behaviour``: with the 14
columns of :mod:`batchml.fraud.features.behaviour` too).

0. Ablation: LightGBM with its defaults on the validation weeks below, on the handbook's 15
   inputs, then with each group of behaviour columns added alone, then with all of them (the
   feature set ``behaviour``); each row's change against the first. ``--quick``: the two ends.
   Then the behaviour set with each column of :mod:`batchml.fraud.features.candidates` added
   alone and with all of them, each row's change against the behaviour set; and per validation
   week the frauds no label-honest input can separate (scenario 2 at a terminal without a
   known fraud) with the average precision of an oracle that ranks every other fraud first.
   ``--ablation-only`` stops there (no search, no test week).
1. Validation: each candidate trains from 2018-04-01 and is assessed on four consecutive weeks,
   each after the 7-day label delay: trained through D, tested on D+8 … D+14 for D = 06-26,
   07-03, 07-10 and 07-17 (the last test day is 2018-07-31), with the protocol of
   :mod:`batchml.fraud.evaluation.protocol` (known compromised cards removed; ROC AUC, average
   precision, card precision@100). Candidates: every SGD combination of alpha × fraud_weight ×
   epochs; for LightGBM a coordinate search (change one axis at a time, move to the best,
   repeat). The best candidate of each kind by mean validation average precision is selected;
   the test week plays no part in it.
2. Test: each selected candidate goes through a checkpoint round trip (the bytes a lineage
   stores), continues on 2018-07-18 … 2018-07-31 and is assessed on 2018-08-08 … 2018-08-14 —
   the handbook's test week; also under the stricter rule that counts the frauds of every
   earlier day as known; and the LightGBM defaults of the ablation on the other feature set,
   through the same round trip and days. Then, as references on this same data and week,
   models fitted in one go (not incremental) the handbook's way, and the handbook's published
   figures (its own simulated data: same generator, other random draws).

    .venv/bin/python bench/model_selection.py          # ablations and whole search (~25 min)
    .venv/bin/python bench/model_selection.py --quick  # ablation ends, candidates, defaults
    .venv/bin/python bench/model_selection.py --quick --ablation-only  # validation only
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.fraud.evaluation.protocol import Protocol, build_test_set, known_fraud_days, shift
from batchml.fraud.features import behaviour
from batchml.fraud.features.candidates import CANDIDATE_COLUMNS, candidate_arrays
from batchml.fraud.features.pipeline import KEY_COLUMNS, LABEL, FeatureSpec, features_of
from batchml.fraud.models import checkpoint
from batchml.fraud.models.model import MODEL_KINDS, make_model
from batchml.fraud.models.model_base import CLASSES, IncrementalModel, fraud_scores

#: Validation: four consecutive weeks, each tested after the 7-day delay; the last one is
#: 2018-07-25 … 2018-07-31, whose labels are all known by 2018-08-07, before the test week.
VALIDATION_CUTS = ("2018-06-26", "2018-07-03", "2018-07-10", "2018-07-17")
TEST_THROUGH = "2018-07-31"
METRICS = ("roc_auc", "average_precision", "card_precision_at_k")
#: The data: the handbook's 15 inputs and the behaviour columns; candidates use all of them,
#: the ablation subsets.
SPEC = FeatureSpec(feature_set="behaviour")
HANDBOOK_INPUTS = FeatureSpec(feature_set="handbook").inputs
#: Every column the data holds: the behaviour set's inputs, then the candidate columns of
#: :mod:`batchml.fraud.features.candidates` (in no feature set; the ablation measures them).
ALL_INPUTS = (*SPEC.inputs, *CANDIDATE_COLUMNS)
SCENARIO = "TX_FRAUD_SCENARIO"  # never an input: the ceiling below reads it
_WIDE = SimpleNamespace(inputs=(*ALL_INPUTS, SCENARIO))  # what pipeline.xy reads of a spec
PROTOCOL = Protocol()

_B = behaviour.BEHAVIOUR_COLUMNS
#: Ablation: each group of behaviour columns added alone to the handbook's inputs, then all.
ABLATION: list[tuple[str, tuple[str, ...]]] = [
    ("handbook's 15 inputs", ()),
    ("+ amount / card's mean (7, 14, 30 d)", _B[0:3]),
    ("+ amount z-score (7, 14, 30 d)", _B[3:6]),
    ("+ amount / card's mean 37…14 d back", _B[6:7]),
    ("+ terminal risk 2, 3, 14 d", _B[7:10]),
    ("+ terminal known-fraud history", _B[10:14]),
    ("all: feature set behaviour", _B),
]
#: --quick: the two ends only.
QUICK_ABLATION = [ABLATION[0], ABLATION[-1]]
_C = CANDIDATE_COLUMNS
#: Then each candidate column added alone to the behaviour set, then all of them; each row's
#: change against the behaviour set.
CANDIDATE_ABLATION: list[tuple[str, tuple[str, ...]]] = [
    ("+ card's earlier tx at this terminal, 30 d", _C[0:1]),
    ("+ card's earlier tx at known-fraud terminals", _C[1:2]),
    ("+ card's max amount ratio today so far", _C[2:3]),
    ("+ all three candidates", _C),
]

#: The Fraud Detection Handbook's test figures on this test week (chapter "Model selection").
HANDBOOK = {
    "logistic regression": {"roc_auc": 0.871, "average_precision": 0.606, "cp100": 0.291},
    "XGBoost (best)": {"roc_auc": 0.879, "average_precision": 0.694, "cp100": 0.305},
}
TARGET = {"roc_auc": 0.89, "average_precision": 0.75, "cp100": 0.33}


#: SGD: every combination.
SGD_GRID = [
    {**MODEL_KINDS["sgd"]().get_params(), "alpha": a, "fraud_weight": w, "epochs": e}
    for a in (1e-4, 1e-3, 1e-2)
    for w in (1.0, 3.0, 10.0)
    for e in (1, 3)
]
#: LightGBM: a coordinate search — start here, change one axis at a time, move to the best,
#: repeat from there (at most ``LGBM_ROUNDS`` times). Axes that move together are one axis.
LGBM_START: dict[str, Any] = {
    "trees_per_batch": 2, "learning_rate": 0.1, "num_leaves": 15, "min_sum_hessian_in_leaf": 1.0,
    "lambda_l2": 10.0, "window": 14, "legit_keep": 0.1, "fraud_weight": 1.0, "seed": 0,
    "num_threads": 1,
}  # fmt: skip
LGBM_AXES: list[list[dict[str, Any]]] = [
    [{"window": w} for w in (1, 7, 14, 30, 60)],
    [{"legit_keep": k} for k in (0.05, 0.1, 0.2)],
    [{"num_leaves": n} for n in (7, 15, 31)],
    [{"lambda_l2": v} for v in (1.0, 10.0, 30.0)],
    [{"fraud_weight": v} for v in (1.0, 3.0)],
    [{"trees_per_batch": t, "learning_rate": r} for t, r in ((1, 0.2), (2, 0.1), (4, 0.05))],
]
#: Not on the search path, measured for the record: no replay at all (each day's whole batch).
LGBM_EXTRA = [{**LGBM_START, "window": 1, "legit_keep": 1.0}]
LGBM_ROUNDS = 3


def _key(kind: str, params: dict[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return kind, tuple(sorted(params.items()))


def neighbours(base: dict[str, Any]) -> list[dict[str, Any]]:
    """``base`` with one axis changed, for every other value of every axis."""
    found = []
    for axis in LGBM_AXES:
        for change in axis:
            if any(base[k] != v for k, v in change.items()):
                found.append({**base, **change})
    return found


@dataclass
class Data:
    """The simulated days as model inputs, with what the protocol needs per row."""

    X: np.ndarray
    y: np.ndarray
    table: pd.DataFrame  # KEY_COLUMNS, inputs, label
    day_rows: dict[str, slice]  # day -> its rows (the frame is sorted by time)
    inputs: tuple[str, ...] = ALL_INPUTS  # the columns of X, a subset of ALL_INPUTS

    def select(self, inputs: Sequence[str]) -> Data:
        """The same data with only ``inputs`` as model inputs."""
        picked = [ALL_INPUTS.index(name) for name in inputs]
        return Data(self.X[:, picked], self.y, self.table, self.day_rows, tuple(inputs))

    def days(self, first: str | None, last: str) -> list[str]:
        return [d for d in self.day_rows if (first is None or d >= first) and d <= last]

    def rows(self, days: Sequence[str]) -> slice:
        return slice(self.day_rows[days[0]].start, self.day_rows[days[-1]].stop)


def load_data() -> Data:
    tx = simulate(SimulationConfig())
    feats = features_of(tx, SPEC)
    table = tx[list(KEY_COLUMNS)].copy()
    table["TX_AMOUNT"] = tx["TX_AMOUNT"]
    for name in SPEC.inputs[1:]:
        table[name] = feats[name].to_numpy()
    columns = {c: tx[c].to_numpy() for c in ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID",
                                             "TERMINAL_ID", "TX_AMOUNT", LABEL)}  # fmt: skip
    for name, values in candidate_arrays(columns, delay_days=SPEC.delay_days).items():
        table[name] = values
    table[LABEL] = tx[LABEL]
    table[SCENARIO] = tx[SCENARIO]
    day = tx["TX_DATETIME"].dt.strftime("%Y-%m-%d").to_numpy()
    bounds = np.flatnonzero(day[1:] != day[:-1]) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(day)]
    day_rows = {str(day[a]): slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)}
    X = table[list(ALL_INPUTS)].to_numpy(dtype=np.float64)
    return Data(X=X, y=tx[LABEL].to_numpy(), table=table, day_rows=day_rows)


def train(model: IncrementalModel, data: Data, first: str | None, last: str) -> float:
    """Warm-start ``model`` on each day first … last in order; seconds per day."""
    days = data.days(first, last)
    started = time.perf_counter()
    for day in days:
        rows = data.day_rows[day]
        model.partial_fit(data.X[rows], data.y[rows], classes=CLASSES)
    return (time.perf_counter() - started) / max(len(days), 1)


def assess(
    model: IncrementalModel, data: Data, trained_through: str, protocol: Protocol = PROTOCOL
) -> dict[str, Any]:
    """The protocol's metrics of ``model`` on the test week that follows ``trained_through``."""
    test = _test_set(data, trained_through, protocol)
    X = test.X[:, [ALL_INPUTS.index(name) for name in data.inputs]]
    return test.metrics(fraud_scores(model, X), protocol.top_k)


def _test_set(data: Data, trained_through: str, protocol: Protocol = PROTOCOL) -> Any:
    """The protocol's test set (X: every column of ``_WIDE``) after ``trained_through``."""
    test_days = protocol.period(trained_through)
    table = data.table.iloc[data.rows(test_days)]
    first, last = known_fraud_days(protocol, test_days)
    known = data.table.iloc[data.rows(data.days(first, last))]
    frauds = known.loc[known[LABEL] == 1, ["TX_DATETIME", "CUSTOMER_ID"]]
    return build_test_set(table, frauds, _WIDE, protocol.delay)  # type: ignore[arg-type]


def ceiling(data: Data, trained_through: str) -> dict[str, float]:
    """What no label-honest input can separate, on the test week after ``trained_through``.

    A scenario-2 fraud (a compromised terminal) whose terminal has no known fraud in the
    known window (labels at least the delay old, over 30 days) looks like any transaction:
    the simulator changes neither the terminal's traffic nor the card's amounts. An oracle
    that scores every other fraud 1 and those frauds 0, like every legitimate row, has this
    average precision, about the share of the other frauds: an estimate of the ceiling.
    """
    test = _test_set(data, trained_through)
    known = test.X[:, ALL_INPUTS.index("TERMINAL_ID_NB_KNOWN_FRAUD_30DAY")]
    blind = (test.y == 1) & (test.X[:, -1] == 2) & (known == 0)
    oracle = ((test.y == 1) & ~blind).astype(np.float64)
    return {
        "frauds": float(test.y.sum()),
        "blind": float(blind.sum()),
        "oracle_ap": float(average_precision_score(test.y, oracle)),
    }


def print_ceiling(data: Data, cuts: Sequence[str]) -> None:
    for cut in cuts:
        c = ceiling(data, cut)
        print(
            f"  trained through {cut}: {c['blind']:.0f} of {c['frauds']:.0f} frauds are "
            f"scenario 2 at a terminal with no known fraud; oracle AP {c['oracle_ap']:.4f}"
        )


def _round_trip(model: IncrementalModel) -> tuple[IncrementalModel, int]:
    """The model restored from checkpoint bytes (as a lineage stores it), and their size."""
    data = checkpoint.dumps(model.get_state(), {"format": checkpoint.FORMAT})
    state, _ = checkpoint.loads(data, "bench")
    restored = make_model(model.kind, model.get_params())
    restored.set_state(state)
    return restored, len(data)


@dataclass
class Outcome:
    kind: str
    params: dict[str, Any]
    validation: dict[str, Any]
    seconds_per_day: float
    state: dict[str, np.ndarray]


_WORKER: dict[str, Data] = {}  # the data, in each pool process
_CANDIDATES = {"inputs": HANDBOOK_INPUTS}  # the candidates' inputs (--features), set before fork


def _init_worker(data: Data) -> None:
    _WORKER["data"] = data


def _validate(candidate: tuple[str, dict[str, Any]]) -> Outcome:
    """Train through each validation cut in turn; the mean of the four weeks' metrics."""
    return _validate_on(candidate, _CANDIDATES["inputs"])


def _validate_inputs(
    job: tuple[str, dict[str, Any], tuple[str, ...]],
) -> Outcome:
    return _validate_on(job[:2], job[2])


def _validate_on(candidate: tuple[str, dict[str, Any]], inputs: tuple[str, ...]) -> Outcome:
    data = _WORKER["data"]
    if inputs != data.inputs:
        data = data.select(inputs)
    kind, params = candidate
    model = make_model(kind, params)
    weeks, seconds, first = [], 0.0, None
    for cut in VALIDATION_CUTS:
        seconds += train(model, data, first, cut) * len(data.days(first, cut))
        weeks.append(assess(model, data, cut))
        first = shift(cut, 1)
    mean = {m: float(np.mean([w[m] for w in weeks])) for m in METRICS}
    per_day = seconds / len(data.days(None, VALIDATION_CUTS[-1]))
    return Outcome(kind, params, mean, per_day, model.get_state())


def _changed(kind: str, params: dict[str, Any]) -> str:
    defaults = MODEL_KINDS[kind]().get_params()
    diff = {k: v for k, v in params.items() if defaults.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(diff.items())) or "(defaults)"


def _row(label: str, m: dict[str, Any], extra: str = "") -> str:
    return (
        f"  {label:44} AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}  "
        f"CP@100 {m['card_precision_at_k']:.4f}{extra}"
    )


def ablation(pool: Any, quick: bool) -> tuple[Outcome, Outcome]:
    """LightGBM (defaults) on the validation weeks with each group of behaviour columns."""
    steps = QUICK_ABLATION if quick else ABLATION
    params = MODEL_KINDS["lgbm"]().get_params()
    jobs = [("lgbm", params, (*HANDBOOK_INPUTS, *extra)) for _, extra in steps]
    outcomes: list[Outcome] = pool.map(_validate_inputs, jobs, chunksize=1)
    _print_gains(steps, outcomes, outcomes[0], len(HANDBOOK_INPUTS))
    return outcomes[0], outcomes[-1]


def _print_gains(
    steps: Sequence[tuple[str, tuple[str, ...]]], outcomes: list[Outcome], base: Outcome, n: int
) -> None:
    """One row per step: its validation figures and their change against ``base``'s."""
    for (label, extra), o in zip(steps, outcomes, strict=True):
        v = o.validation
        gain = "".join(
            f"  {short} {v[m] - base.validation[m]:+.4f}"
            for short, m in (("AUC", "roc_auc"), ("AP", "average_precision"),
                             ("CP", "card_precision_at_k"))
        )  # fmt: skip
        print(_row(f"{label} ({n + len(extra)})", v, gain))


def candidate_ablation(pool: Any, behaviour_set: Outcome) -> None:
    """LightGBM (defaults) on the validation weeks, the behaviour set plus each candidate."""
    params = MODEL_KINDS["lgbm"]().get_params()
    jobs = [("lgbm", params, (*SPEC.inputs, *extra)) for _, extra in CANDIDATE_ABLATION]
    outcomes: list[Outcome] = pool.map(_validate_inputs, jobs, chunksize=1)
    _print_gains(CANDIDATE_ABLATION, outcomes, behaviour_set, len(SPEC.inputs))


def test_selected(data: Data, best: Outcome) -> None:
    model = make_model(best.kind, best.params)
    model.set_state(best.state)
    model, _ = _round_trip(model)
    per_day = train(model, data, shift(VALIDATION_CUTS[-1], 1), TEST_THROUGH)
    restored, size = _round_trip(model)
    m = assess(restored, data, TEST_THROUGH)
    strict = assess(restored, data, TEST_THROUGH, replace(PROTOCOL, known_days=0))
    print(_row(f"{best.kind}: {_changed(best.kind, best.params)}", m))
    print(
        f"  {'':44} rows {m['rows']} ({m['frauds']} frauds), {m['excluded_known_compromised']} "
        f"excluded; {per_day * 1000:.0f} ms/day of training; checkpoint {size / 1e6:.2f} MB"
    )
    print(_row("  same, every earlier fraud known", strict, f"  ({strict['rows']} rows)"))


def _best(outcomes: list[Outcome], kind: str) -> Outcome:
    """The candidate of ``kind`` with the highest mean validation average precision."""
    return max(
        (o for o in outcomes if o.kind == kind), key=lambda o: o.validation["average_precision"]
    )


def search(pool: Any, quick: bool) -> list[Outcome]:
    """Validate each kind's defaults, the SGD grid and the LightGBM coordinate search."""
    todo = [(kind, cls().get_params()) for kind, cls in sorted(MODEL_KINDS.items())]
    if not quick:
        todo += [("sgd", p) for p in SGD_GRID]
        todo += [("lgbm", p) for p in [LGBM_START, *neighbours(LGBM_START), *LGBM_EXTRA]]
    outcomes: list[Outcome] = []
    seen: set[object] = set()
    for _ in range(1 if quick else LGBM_ROUNDS):
        fresh = list({_key(*c): c for c in todo if _key(*c) not in seen}.values())
        if not fresh:
            break
        seen.update(_key(*c) for c in fresh)
        outcomes += pool.map(_validate, fresh, chunksize=1)
        todo = [("lgbm", p) for p in neighbours(_best(outcomes, "lgbm").params)]
    return outcomes


class _Batch:
    """A reference fitted once on a block of days (not incremental): ``predict_proba`` only."""

    def __init__(self, fit: Any, predict: Any) -> None:
        self.fit, self.predict = fit, predict

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        fraud = np.asarray(self.predict(X))
        return np.column_stack([1.0 - fraud, fraud])


def _logistic(X: np.ndarray, y: np.ndarray) -> _Batch:
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(X), y)
    return _Batch(clf, lambda Z: clf.predict_proba(scaler.transform(Z))[:, 1])


def _boosted(X: np.ndarray, y: np.ndarray) -> _Batch:
    params = {
        "objective": "binary", "max_depth": 6, "num_leaves": 63, "learning_rate": 0.3,
        "min_sum_hessian_in_leaf": 1.0, "lambda_l2": 1.0, "min_data_in_leaf": 1,
        "deterministic": True, "num_threads": 2, "seed": 0, "verbosity": -1,
    }  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=100)
    return _Batch(booster, booster.predict)


def references(data: Data) -> None:
    """The handbook's kind of models, fitted in one go, measured on this data and test week."""
    data = data.select(HANDBOOK_INPUTS)  # the handbook's models, the handbook's inputs
    week = data.rows(data.days(shift(TEST_THROUGH, -6), TEST_THROUGH))
    everything = data.rows(data.days(None, TEST_THROUGH))
    for label, fit, rows in (
        ("logistic regression, training week only", _logistic, week),
        ("boosted trees (XGBoost defaults), week only", _boosted, week),
        ("logistic regression, all days at once", _logistic, everything),
        ("boosted trees (XGBoost defaults), all days", _boosted, everything),
    ):
        model = fit(data.X[rows], data.y[rows])
        print(_row(label, assess(model, data, TEST_THROUGH)))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each kind's defaults only")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--features", choices=("handbook", "behaviour"), default="handbook",
        help="the candidates' feature set (the ablation measures both)",
    )  # fmt: skip
    parser.add_argument(
        "--ablation-only", action="store_true",
        help="the validation ablations only: no search, the test week is not assessed",
    )  # fmt: skip
    args = parser.parse_args()
    _CANDIDATES["inputs"] = FeatureSpec(feature_set=args.features).inputs

    started = time.perf_counter()
    data = load_data()
    print(
        f"data: {len(data.y)} transactions, {int(data.y.sum())} frauds, {len(data.day_rows)} days"
    )
    print(f"      simulated and featurised in {time.perf_counter() - started:.1f}s")

    print(
        "\nvalidation: mean of 4 weeks (train 2018-04-01 … D, test D+8 … D+14 for D = "
        f"{', '.join(VALIDATION_CUTS)}):"
    )
    with multiprocessing.get_context("fork").Pool(args.processes, _init_worker, (data,)) as pool:
        print("ablation (lgbm defaults; change against the handbook's inputs):")
        ends = dict(zip(("handbook", "behaviour"), ablation(pool, args.quick), strict=True))
        print("candidates (lgbm defaults; change against feature set behaviour):")
        candidate_ablation(pool, ends["behaviour"])
        print("ceiling (frauds no label-honest input separates):")
        print_ceiling(data, VALIDATION_CUTS)
        if args.ablation_only:
            print(f"\ntotal {time.perf_counter() - started:.0f}s (validation only)")
            return
        print(f"candidates (feature set {args.features}):")
        outcomes = search(pool, args.quick)
    for kind in sorted({o.kind for o in outcomes}):
        for o in (o for o in outcomes if o.kind == kind):
            ms = f"  {o.seconds_per_day * 1000:5.0f} ms/day"
            print(_row(f"{kind}: {_changed(kind, o.params)}", o.validation, ms))

    print(f"\ntest (train 2018-04-01 … {TEST_THROUGH}, test 2018-08-08 … 2018-08-14):")
    for kind in sorted({o.kind for o in outcomes}):
        best = _best(outcomes, kind)
        test_selected(data.select(_CANDIDATES["inputs"]), best)
        if best.params != MODEL_KINDS[kind]().get_params():
            print(f"  note: the {kind} defaults are not the selected parameters")
    other = "behaviour" if args.features == "handbook" else "handbook"
    print(f"  the lgbm defaults on feature set {other} (from the ablation):")
    test_selected(data.select(FeatureSpec(feature_set=other).inputs), ends[other])
    print("  ceiling (frauds no label-honest input separates):")
    print_ceiling(data, [TEST_THROUGH])
    print("\nreferences on this data, fitted once (not incremental), same test week:")
    references(data)
    print(
        "\npublished (the handbook's own simulated data; its model trained on 2018-07-25 … 07-31):"
    )
    for name, m in HANDBOOK.items():
        print(
            f"  handbook {name:35} AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}  "
            f"CP@100 {m['cp100']:.4f}"
        )
    t = TARGET
    print(f"  target: AUC ≥ {t['roc_auc']}, AP ≥ {t['average_precision']}, CP@100 ≥ {t['cp100']}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()

"""The behaviour feature set: against a slow reference, bit for bit alone or in blocks, in specs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from batchml import exitcodes
from batchml.errors import ConfigError
from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.features import pipeline
from batchml.fraud.features.behaviour import (
    BEHAVIOUR_COLUMNS,
    behaviour_history_days,
    compute_behaviour,
)
from batchml.fraud.features.candidates import CANDIDATE_COLUMNS, candidate_arrays
from batchml.fraud.features.engineered import compute_features
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import lineage
from batchml.queue import open_queue
from batchml.storage import Storage
from tests.fraud.test_features import DAY, MONDAY, SECOND, random_frame, transactions
from tests.support.cli import run_cli
from tests.support.fraud_data import small_root
from tests.support.fraud_env import make_env, run_workers, train

BEHAVIOUR = FeatureSpec(feature_set="behaviour")


def _slow_reference(tx: pd.DataFrame, delay: int = 7) -> pd.DataFrame:
    """The module docstring's definitions, one row at a time, in plain Python."""
    order = np.argsort(tx["TX_DATETIME"].to_numpy(), kind="stable")
    rank = np.empty(len(tx), dtype=np.int64)
    rank[order] = np.arange(len(tx))  # position in time order, ties in input order
    t = tx["TX_DATETIME"].to_numpy().view(np.int64)
    cards, terminals = tx["CUSTOMER_ID"].to_numpy(), tx["TERMINAL_ID"].to_numpy()
    amounts, frauds = tx["TX_AMOUNT"].to_numpy(), tx["TX_FRAUD"].to_numpy()
    rows = []
    for i in range(len(tx)):
        mine = [j for j in range(len(tx)) if cards[j] == cards[i]]
        row: list[float] = []
        ratios, zscores = [], []
        for n in (7, 14, 30):
            earlier = [amounts[j] for j in mine if rank[j] < rank[i] and t[j] > t[i] - n * DAY]
            mean = math.fsum(earlier) / len(earlier) if earlier else 0.0
            ratios.append(amounts[i] / mean if earlier and mean != 0 else 1.0)
            var = math.fsum(a * a for a in earlier) / len(earlier) - mean**2 if earlier else 0
            std = math.sqrt(max(var, 0.0))
            spread = len(earlier) > 1 and std > 1e-6 * abs(mean)
            zscores.append((amounts[i] - mean) / std if spread else 0.0)
        old = [amounts[j] for j in mine if t[i] - 37 * DAY < t[j] <= t[i] - 14 * DAY]
        old_mean = math.fsum(old) / len(old) if old else 0.0
        row += [*ratios, *zscores, amounts[i] / old_mean if old and old_mean else 1.0]
        at = [j for j in range(len(tx)) if terminals[j] == terminals[i]]
        end = t[i] - delay * DAY
        for n in (2, 3, 14):
            window = [j for j in at if end - n * DAY < t[j] <= end]
            row.append(sum(frauds[j] for j in window) / len(window) if window else 0.0)
        known = sorted((j for j in at if end - 30 * DAY < t[j] <= end), key=lambda j: rank[j])
        hits = [j for j in known if frauds[j] == 1]
        row.append(float(len(hits)))
        row.append((end - t[hits[-1]]) / DAY if hits else 30.0)
        row.append((end - t[hits[0]]) / DAY if hits else 30.0)
        row.append(float(frauds[known[-1]]) if known else 0.0)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(BEHAVIOUR_COLUMNS), index=tx.index)


@pytest.mark.parametrize("resolution", [SECOND, 3600 * SECOND])
def test_matches_the_slow_reference(resolution: int) -> None:
    # Given transactions in random order; stamped to the hour, many share a timestamp
    tx = random_frame(21, 500, customers=6, terminals=5, days=60, resolution=resolution)
    tx = tx.sample(frac=1.0, random_state=3)
    ours, theirs = compute_behaviour(tx), _slow_reference(tx)
    assert list(ours.columns) == list(BEHAVIOUR_COLUMNS) and ours.index.equals(tx.index)
    for name in BEHAVIOUR_COLUMNS:
        want = theirs[name].to_numpy()
        np.testing.assert_allclose(ours[name].to_numpy(), want, rtol=1e-9, atol=1e-9, err_msg=name)
    assert not ours.isna().to_numpy().any()


def test_a_rows_values_do_not_depend_on_the_other_rows_bit_for_bit() -> None:
    # Given a card's transactions, alone and beside a big spender at its terminals
    tx = random_frame(11, 500, customers=4, terminals=3, days=40)
    big = random_frame(12, 3000, customers=1, terminals=1, days=40)
    big["TRANSACTION_ID"] += 10_000
    big["CUSTOMER_ID"] = big["TERMINAL_ID"] = 99
    big["TX_AMOUNT"] = big["TX_AMOUNT"] * 987_654.321
    alone = compute_behaviour(tx)
    both = pd.concat([big, tx], ignore_index=True).sort_values("TX_DATETIME", kind="stable")
    ids = both["TRANSACTION_ID"].to_numpy()
    beside = compute_behaviour(both).set_index(ids).loc[tx["TRANSACTION_ID"]]
    # Then every value of the card's rows is the same float, to the last bit
    for name in BEHAVIOUR_COLUMNS:
        np.testing.assert_array_equal(alone[name].to_numpy(), beside[name].to_numpy(), name)


@pytest.mark.parametrize("day", [40, 55])
def test_a_day_needs_exactly_its_history_days(day: int) -> None:
    tx = random_frame(4, 12_000, customers=40, terminals=15, days=70)
    days = (tx["TX_DATETIME"] - pd.Timestamp(MONDAY)).dt.days
    full = compute_behaviour(tx)[days == day]
    needed = behaviour_history_days()
    assert needed == 37 == BEHAVIOUR.history_days

    def values_from(history: int) -> pd.DataFrame:
        kept = tx[(days >= day - history) & (days <= day)]
        return compute_behaviour(kept)[days[kept.index] == day]

    pd.testing.assert_frame_equal(values_from(needed), full, check_exact=True)
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(values_from(needed - 1), full, check_exact=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("behaviour")
    small_root(base / "cache", base / "root")
    return base / "root"


def test_compute_days_gives_each_day_the_bytes_of_computing_it_alone(root: Path) -> None:
    storage = Storage(root)
    days = datasets.training_days(storage)
    wanted = [*days[5:20], *days[30:33]]
    computed = pipeline.compute_days(storage, wanted, BEHAVIOUR)
    assert sorted(computed.tables) == wanted and not computed.invalid
    for day in wanted:
        alone = pipeline.table_to_bytes(pipeline.compute_day(storage, day, BEHAVIOUR))
        assert pipeline.arrow_to_bytes(computed.tables[day]) == alone
    table = computed.frame(wanted[0])
    assert list(table.columns) == [*pipeline.KEY_COLUMNS, *BEHAVIOUR.inputs, pipeline.LABEL]


def test_the_handbook_spec_keeps_its_id_json_and_15_inputs() -> None:
    handbook = FeatureSpec()
    assert handbook.feature_set == "handbook" and len(handbook.inputs) == 15
    assert handbook.id == "v2-w1-7-30_d7"  # the cache path of every table written before
    assert handbook.to_json() == {"windows": [1, 7, 30], "delay_days": 7}
    # a payload written before feature sets existed is the handbook's
    assert FeatureSpec.from_json({"windows": [1, 7, 30], "delay_days": 7}) == handbook
    assert FeatureSpec.from_json(None) == handbook
    assert FeatureSpec.from_json(BEHAVIOUR.to_json()) == BEHAVIOUR
    assert BEHAVIOUR.id != handbook.id and BEHAVIOUR.cache_path("d") != handbook.cache_path("d")
    assert BEHAVIOUR.inputs == (*handbook.inputs, *BEHAVIOUR_COLUMNS)
    with pytest.raises(ConfigError, match="unknown feature set 'fancy'"):
        FeatureSpec.from_json({"windows": [1], "delay_days": 7, "feature_set": "fancy"})


def test_a_behaviour_lineage_trains_stamps_its_inputs_and_two_workers_give_its_bytes(
    tmp_path: Path,
) -> None:
    """Given the small workload, a lineage on the behaviour set, by one and by two workers."""
    checkpoints, heads = [], []
    for workers in (1, 2):
        env = make_env(tmp_path / f"w{workers}")
        days = env.train_days[:12]
        specs = plan.training_items(env.queue, days, run="default", spec=BEHAVIOUR)
        env.queue.push(specs)
        assert run_workers(env, workers) == [exitcodes.OK] * workers
        chain = env.queue.lineage("default")
        assert len(chain) == len(days)
        checkpoints.append([h.checkpoint.sha256 for h in chain if h.checkpoint])
        heads.append((env, chain[-1]))
    # Then both make the same checkpoints, bit for bit
    assert checkpoints[0] == checkpoints[1]
    env, head = heads[0]
    # and the checkpoint holds the 29 inputs: it loads with them, not with the handbook's 15
    _, meta = lineage.load_version(env.storage, head, BEHAVIOUR.inputs)
    assert meta["inputs"] == list(BEHAVIOUR.inputs)
    with pytest.raises(ConfigError, match="other input features"):
        lineage.load_version(env.storage, head, FeatureSpec().inputs)


def test_a_handbook_lineage_keeps_training_and_loading_with_its_15_inputs(tmp_path: Path) -> None:
    """A lineage pushed without a feature set (as before) is the handbook's: its checkpoints
    hold 15 inputs, load with the spec read back from its payload, and it continues."""
    env = make_env(tmp_path / "old")
    assert train(env, days=env.train_days[:8], test_days=[]) == [exitcodes.OK]
    item = next(i for i in env.queue.items() if i.payload.get("task") == "fraud.train")
    assert "feature_set" not in item.payload["features"]
    spec = FeatureSpec.from_json(item.payload["features"])
    head = env.queue.lineage("default")[-1]
    _, meta = lineage.load_version(env.storage, head, spec.inputs)
    assert len(meta["inputs"]) == 15
    assert train(env, days=env.train_days[:10], test_days=[]) == [exitcodes.OK]
    assert len(env.queue.lineage("default")) == 10


def test_the_cli_pushes_a_behaviour_run_evaluates_it_and_keeps_its_features(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from batchml.cli.queue_cmd import FeatureSet

    assert tuple(f.value for f in FeatureSet) == pipeline.FEATURE_SETS
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)
    cli = ("--root", str(root))
    # Given a run pushed with --features behaviour and trained by a worker
    assert (
        run_cli(capsys, *cli, "queue", "push", "--end", days[9], "--features", "behaviour").code
        == 0
    )
    assert run_cli(capsys, *cli, "worker", "--poll", "0.05").code == exitcodes.OK
    queue = open_queue(f"sqlite:///{root}/queue.db")
    assert plan.run_spec(queue, "default") == BEHAVIOUR
    # When it is evaluated, then its checkpoint's 29 inputs are used
    evaluated = run_cli(capsys, *cli, "fraud", "evaluate", "--json")
    assert evaluated.code == exitcodes.OK, evaluated.err
    assert json.loads(evaluated.out)["metrics"]["rows"] > 0
    # and a later push asking for the handbook's features is refused, naming both
    refused = run_cli(capsys, *cli, "queue", "push", "--features", "handbook")
    assert refused.code == exitcodes.CONFIG and "behaviour" in refused.err
    # while one without --features continues the run with its own
    assert run_cli(capsys, *cli, "queue", "push", "--end", days[11]).code == 0
    assert plan.run_spec(queue, "default") == BEHAVIOUR


# -- candidate columns (batchml.fraud.features.candidates), measured by the ablation ----------


def _candidates(tx: pd.DataFrame) -> pd.DataFrame:
    columns = {c: tx[c].to_numpy() for c in REQUIRED}
    return pd.DataFrame(candidate_arrays(columns), index=tx.index)


def _slow_candidates(tx: pd.DataFrame, delay: int = 7) -> pd.DataFrame:
    """The candidates module's docstring, one row at a time, in plain Python."""
    order = np.argsort(tx["TX_DATETIME"].to_numpy(), kind="stable")
    rank = np.empty(len(tx), dtype=np.int64)
    rank[order] = np.arange(len(tx))  # position in time order, ties in input order
    t = tx["TX_DATETIME"].to_numpy().view(np.int64)
    cards, terminals = tx["CUSTOMER_ID"].to_numpy(), tx["TERMINAL_ID"].to_numpy()
    amounts, frauds = tx["TX_AMOUNT"].to_numpy(), tx["TX_FRAUD"].to_numpy()
    n = len(tx)

    def earlier(i: int, days: int) -> list[int]:
        return [j for j in range(n) if cards[j] == cards[i] and rank[j] < rank[i]
                and t[j] > t[i] - days * DAY]  # fmt: skip

    def risky(j: int) -> bool:
        end = t[j] - delay * DAY
        return any(terminals[k] == terminals[j] and frauds[k] == 1
                   and end - 14 * DAY < t[k] <= end for k in range(n))  # fmt: skip

    def ratio(i: int) -> float:
        before = [amounts[j] for j in earlier(i, 14)]
        mean = math.fsum(before) / len(before) if before else 0.0
        return float(amounts[i] / mean) if before and mean != 0 else 1.0

    rows = []
    for i in range(n):
        pair = sum(1 for j in earlier(i, 30) if terminals[j] == terminals[i])
        nb_risky = sum(1 for j in earlier(i, 14) if risky(j))
        today = [j for j in range(n) if cards[j] == cards[i] and rank[j] <= rank[i]
                 and t[j] // DAY == t[i] // DAY]  # fmt: skip
        rows.append([float(pair), float(nb_risky), max(ratio(j) for j in today)])
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS), index=tx.index)


REQUIRED = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD")


def _assert_candidates_equal(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.columns) == list(CANDIDATE_COLUMNS) and ours.index.equals(theirs.index)
    assert not ours.isna().to_numpy().any()
    for name in CANDIDATE_COLUMNS:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(tx=transactions(max_rows=30))
def test_candidates_match_the_slow_reference_on_random_data(tx: pd.DataFrame) -> None:
    # Given few cards and terminals, ties, window-edge offsets, rows in random order; amounts
    # in cents (the exact window sums drop bits far below a cent, e.g. of subnormal floats)
    tx["TX_AMOUNT"] = tx["TX_AMOUNT"].round(2)
    _assert_candidates_equal(_candidates(tx), _slow_candidates(tx))


@pytest.mark.parametrize("resolution", [SECOND, 3600 * SECOND])
def test_candidates_match_the_slow_reference(resolution: int) -> None:
    tx = random_frame(21, 400, customers=6, terminals=5, days=60, resolution=resolution)
    tx = tx.sample(frac=1.0, random_state=3)
    _assert_candidates_equal(_candidates(tx), _slow_candidates(tx))


@pytest.mark.parametrize("seed", [1, 2])
def test_no_candidate_or_behaviour_column_sees_a_label_before_it_is_known_or_a_later_row(
    seed: int,
) -> None:
    # Given transactions, and a copy where everything after a cut time is rewritten (amounts,
    # terminals, labels, extra rows) and the labels of the delay before the cut are flipped
    # (frauds are rare, so a terminal's known frauds come and go)
    tx = random_frame(seed, 3000, customers=8, terminals=40, days=50, resolution=60 * SECOND)
    rng = np.random.default_rng(seed)
    tx["TX_FRAUD"] = (rng.random(len(tx)) < 0.03).astype(np.int64)
    t = tx["TX_DATETIME"].to_numpy().view(np.int64)
    cut = MONDAY + 35 * DAY + 7 * 3600 * SECOND
    changed = tx.copy()
    later, unknown = t > cut, t > cut - 7 * DAY
    changed.loc[later, "TX_AMOUNT"] = rng.integers(1, 10**6, later.sum()) / 100
    changed.loc[later, "TERMINAL_ID"] = rng.integers(0, 40, later.sum())
    changed.loc[unknown, "TX_FRAUD"] = 1 - changed.loc[unknown, "TX_FRAUD"]
    extra = random_frame(seed + 9, 300, customers=8, terminals=40, days=50)
    extra = extra[extra["TX_DATETIME"].to_numpy().view(np.int64) > cut]
    extra["TRANSACTION_ID"] += 100_000
    changed = pd.concat([changed, extra])
    # Then every feature of the rows up to the cut is the same float
    before = ~later
    for compute in (_candidates, compute_behaviour, compute_features):
        old = compute(tx)[before]
        new = compute(changed).iloc[: len(tx)][before]
        pd.testing.assert_frame_equal(old, new, check_exact=True)
    # (and the flipped labels did change something: they are used once known)
    assert not _candidates(tx).equals(_candidates(changed).iloc[: len(tx)])


def test_candidates_of_a_day_need_only_the_feature_sets_history() -> None:
    tx = random_frame(4, 12_000, customers=40, terminals=15, days=70)
    days = (tx["TX_DATETIME"] - pd.Timestamp(MONDAY)).dt.days
    full = _candidates(tx)[days == 55]
    kept = tx[(days >= 55 - BEHAVIOUR.history_days) & (days <= 55)]
    pd.testing.assert_frame_equal(_candidates(kept)[days[kept.index] == 55], full, check_exact=True)

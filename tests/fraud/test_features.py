"""batchml.fraud.features.engineered against a slow reference, pandas rolling, and by hand."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchml.errors import ConfigError, DatasetError
from batchml.fraud.features import engineered as features
from batchml.fraud.features.engineered import (
    FEATURE_COLUMNS,
    compute_features,
    feature_columns,
    history_days_needed,
)
from tests.support.reference_features import reference_features

NS = 1
SECOND = 10**9 * NS
HOUR = 3600 * SECOND
DAY = 24 * HOUR
MONDAY = pd.Timestamp("2018-04-09").value  # nanoseconds since the epoch
TOLERANCE = 1e-9

Row = tuple[int, int, int, int, float, int]  # id, time (ns), customer, terminal, amount, fraud


def frame(rows: list[Row], index: pd.Index | None = None) -> pd.DataFrame:
    """Transactions in the canonical column types, in the given row order."""
    tids, times, customers, terminals, amounts, frauds = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.array(tids, dtype=np.int64),
            "TX_DATETIME": np.array(times, dtype=np.int64).view("datetime64[ns]"),
            "CUSTOMER_ID": np.array(customers, dtype=np.int64),
            "TERMINAL_ID": np.array(terminals, dtype=np.int64),
            "TX_AMOUNT": np.array(amounts, dtype=np.float64),
            "TX_FRAUD": np.array(frauds, dtype=np.int64),
        },
        index=index,
    )


def random_frame(
    seed: int, n: int, *, customers: int, terminals: int, days: int, resolution: int = SECOND
) -> pd.DataFrame:
    """Random transactions; coarse ``resolution`` makes equal timestamps frequent."""
    rng = np.random.default_rng(seed)
    ticks = rng.integers(0, days * DAY // resolution, n)
    return frame(
        list(
            zip(
                rng.permutation(n).tolist(),
                (MONDAY + ticks * resolution).tolist(),
                rng.integers(0, customers, n).tolist(),
                rng.integers(0, terminals, n).tolist(),
                (rng.integers(1, 30_000, n) / 100).tolist(),
                (rng.random(n) < 0.2).astype(int).tolist(),
                strict=True,
            )
        )
    )


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns, index and rows; ids, flags and counts equal, means and risks to 1e-9."""
    assert list(actual.columns) == list(expected.columns)
    assert actual.index.equals(expected.index)
    for name in actual.columns:
        got, want = actual[name].to_numpy(), expected[name].to_numpy()
        if name.startswith(("TRANSACTION_ID", "TX_DURING")) or "_NB_TX_" in name:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=name)


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- hypothesis: few customers and terminals, ties, exact day offsets, several weeks ----------

TIMES_OF_DAY = st.one_of(
    st.sampled_from([0, NS, 6 * HOUR, 7 * HOUR - NS, 7 * HOUR, DAY - NS]),
    st.integers(0, DAY - 1),
)
AMOUNTS = st.one_of(
    st.integers(0, 10**7).map(lambda cents: cents / 100),
    st.floats(0, 1e4, allow_nan=False, allow_infinity=False),
)
ID_POOLS = st.sampled_from([(0, 1, 2), (5, -3, 10**12)])  # compact ids, or ids to factorize


@st.composite
def transactions(draw: st.DrawFn, max_rows: int = 40) -> pd.DataFrame:
    n = draw(st.integers(1, max_rows))
    customers, terminals = draw(ID_POOLS), draw(ID_POOLS)
    tids = draw(st.permutations(range(100, 100 + n)))
    rows = [
        (
            tids[i],
            MONDAY + draw(st.integers(-45, 0)) * DAY + draw(TIMES_OF_DAY),
            draw(st.sampled_from(customers)),
            draw(st.sampled_from(terminals)),
            draw(AMOUNTS),
            draw(st.integers(0, 1)),
        )
        for i in range(n)
    ]
    index = pd.Index(draw(st.permutations(range(n)))) if draw(st.booleans()) else None
    return frame(rows, index)


@pytest.mark.parametrize("time_key", ["scaled time", "time ranks"])
@settings(max_examples=100, deadline=None)
@given(tx=transactions())
def test_matches_the_slow_reference(tx: pd.DataFrame, time_key: str) -> None:
    # Given random transactions with ties and window-edge offsets, in random order
    limit = 0 if time_key == "time ranks" else features._KEY_LIMIT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "_KEY_LIMIT", limit)  # 0: time coordinates are ranks
        # When features are computed
        actual = compute_features(tx)
    # Then they equal the loop-over-rows reference
    assert_same_features(actual, reference_features(tx))


@settings(max_examples=40, deadline=None)
@given(
    tx=transactions(max_rows=25),
    windows=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
    delay_days=st.integers(1, 5),
)
def test_matches_the_reference_for_other_windows_and_delays(
    tx: pd.DataFrame, windows: list[int], delay_days: int
) -> None:
    actual = compute_features(tx, windows=windows, delay_days=delay_days)
    assert_same_features(actual, reference_features(tx, windows, delay_days))


# -- hand-computed edges -----------------------------------------------------------------------


def test_customer_window_excludes_exactly_n_days_earlier_and_includes_1ns_later() -> None:
    # Given customer 7's transactions, two of them at the same instant T (id 4, then id 3 in
    # the input: ties follow the input order, as in pandas rolling, not the ids)
    tx = frame(
        [
            (4, MONDAY, 7, 1, 50.0, 0),
            (1, MONDAY - DAY, 7, 1, 10.0, 0),  # exactly one day before T
            (3, MONDAY, 7, 1, 70.0, 0),
            (2, MONDAY - DAY + NS, 7, 1, 30.0, 0),  # one day minus 1 ns before T
            (5, MONDAY, 8, 1, 1000.0, 0),  # another customer, same instant
        ]
    )
    out = compute_features(tx).set_index("TRANSACTION_ID")
    nb_1 = out["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]
    avg_1 = out["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"]
    # Then at T, id 1 is out of the 1-day window, id 2 in; id 4 does not see id 3, 3 sees 4
    assert nb_1.to_dict() == {4: 2.0, 1: 1.0, 3: 3.0, 2: 2.0, 5: 1.0}
    assert avg_1.to_dict() == {4: 40.0, 1: 10.0, 3: 50.0, 2: 20.0, 5: 1000.0}
    assert out.loc[3, "CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 4.0
    assert out.loc[3, "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] == 40.0
    assert out.loc[4, "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] == pytest.approx(90 / 3, abs=1e-12)


def test_same_instant_rows_follow_the_input_order_like_pandas_rolling() -> None:
    # Given two transactions of one card at the same second, in both input orders
    rows = [(10, MONDAY, 7, 1, 20.0, 0), (11, MONDAY, 7, 1, 60.0, 0)]
    forward, backward = frame(rows), frame(rows[::-1])
    # Then the first in the input sees only itself, the second sees both, whatever the ids
    for tx in (forward, backward):
        out = compute_features(tx)
        assert out["CUSTOMER_ID_NB_TX_1DAY_WINDOW"].tolist() == [1.0, 2.0]
        assert out["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"].tolist() == [
            tx["TX_AMOUNT"].iloc[0],
            40.0,
        ]
        # exactly as pandas' own time-based rolling over the rows in input order
        rolled = tx.set_index("TX_DATETIME").groupby("CUSTOMER_ID")["TX_AMOUNT"].rolling("1D")
        assert rolled.count().tolist() == [1.0, 2.0]
        assert rolled.mean().tolist() == out["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"].tolist()


def test_terminal_window_is_shifted_back_by_the_delay() -> None:
    # Given terminal 5's transactions around the edges of (T - 8 days, T - 7 days]
    tx = frame(
        [
            (10, MONDAY - 8 * DAY, 1, 5, 1.0, 1),  # exactly d + n before: out
            (11, MONDAY - 8 * DAY + NS, 1, 5, 1.0, 1),  # 1 ns later: in
            (12, MONDAY - 7 * DAY, 1, 5, 1.0, 0),  # exactly d before: in
            (13, MONDAY - 7 * DAY + NS, 1, 5, 1.0, 1),  # within the delay: out
            (14, MONDAY, 1, 5, 1.0, 1),  # the current transaction: out
            (15, MONDAY - 7 * DAY, 1, 6, 1.0, 1),  # another terminal: out
        ]
    )
    out = compute_features(tx).set_index("TRANSACTION_ID")
    # Then at T, the 1-day window holds ids 11 and 12, one fraud in two
    assert out.loc[14, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 2.0
    assert out.loc[14, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.5
    # and the 7- and 30-day windows (T - 14 d, T - 7 d], (T - 37 d, T - 7 d] ids 10, 11, 12
    for n in (7, 30):
        assert out.loc[14, f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] == 3.0
        assert out.loc[14, f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] == pytest.approx(2 / 3, abs=1e-15)
    # and an empty window has count 0 and risk 0
    assert out.loc[13, "TERMINAL_ID_NB_TX_30DAY_WINDOW"] == 0.0
    assert out.loc[13, "TERMINAL_ID_RISK_30DAY_WINDOW"] == 0.0


def test_weekend_and_night_flags() -> None:
    stamps = {
        "2018-04-06 23:59:59": (0, 0),  # Friday
        "2018-04-07 00:00:00": (1, 1),  # Saturday
        "2018-04-07 06:59:59.999999999": (1, 1),
        "2018-04-07 07:00:00": (1, 0),
        "2018-04-08 23:59:59": (1, 0),  # Sunday
        "2018-04-09 00:00:00": (0, 1),  # Monday
        "1969-12-31 06:00:00": (0, 1),  # Wednesday, before the epoch
    }
    times = [pd.Timestamp(s).value for s in stamps]
    tx = frame([(i, t, i, i, 1.0, 0) for i, t in enumerate(times)])
    out = compute_features(tx)
    assert list(zip(out["TX_DURING_WEEKEND"], out["TX_DURING_NIGHT"], strict=True)) == list(
        stamps.values()
    )


# -- properties --------------------------------------------------------------------------------


def test_columns_dtypes_and_index() -> None:
    tx = random_frame(1, 200, customers=5, terminals=5, days=20)
    tx.index = pd.Index(np.arange(200) * 10 + 3)
    out = compute_features(tx)
    assert FEATURE_COLUMNS == (
        "TX_DURING_WEEKEND",
        "TX_DURING_NIGHT",
        "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
        "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
        "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
        "TERMINAL_ID_NB_TX_1DAY_WINDOW",
        "TERMINAL_ID_RISK_1DAY_WINDOW",
        "TERMINAL_ID_NB_TX_7DAY_WINDOW",
        "TERMINAL_ID_RISK_7DAY_WINDOW",
        "TERMINAL_ID_NB_TX_30DAY_WINDOW",
        "TERMINAL_ID_RISK_30DAY_WINDOW",
    )
    assert tuple(out.columns) == ("TRANSACTION_ID", *FEATURE_COLUMNS)
    assert out.index.equals(tx.index)
    assert (out["TRANSACTION_ID"] == tx["TRANSACTION_ID"]).all()
    assert {str(out[c].dtype) for c in ("TX_DURING_WEEKEND", "TX_DURING_NIGHT")} == {"int64"}
    assert {str(out[c].dtype) for c in FEATURE_COLUMNS[2:]} == {"float64"}
    joined = pd.concat([tx, out.drop(columns="TRANSACTION_ID")], axis=1)
    assert len(joined) == len(tx) and not joined.isna().any().any()
    assert feature_columns((2,))[2:] == (
        "CUSTOMER_ID_NB_TX_2DAY_WINDOW",
        "CUSTOMER_ID_AVG_AMOUNT_2DAY_WINDOW",
        "TERMINAL_ID_NB_TX_2DAY_WINDOW",
        "TERMINAL_ID_RISK_2DAY_WINDOW",
    )


def test_input_order_changes_only_the_windows_of_a_cards_same_instant_rows() -> None:
    # Given transactions stamped to the hour (many ties), and the same rows shuffled
    tx = random_frame(2, 3000, customers=20, terminals=10, days=50, resolution=HOUR)
    shuffled = tx.sample(frac=1.0, random_state=3).reset_index(drop=True)
    by_id = compute_features(tx).set_index("TRANSACTION_ID").sort_index()
    shuffled_by_id = compute_features(shuffled).set_index("TRANSACTION_ID").sort_index()
    # Then the terminal windows (which end d days back) are exactly the same
    customer = [c for c in FEATURE_COLUMNS if c.startswith("CUSTOMER_ID")]
    others = [c for c in FEATURE_COLUMNS if c not in customer]
    pd.testing.assert_frame_equal(by_id[others], shuffled_by_id[others], check_exact=True)
    # and so are the customer windows of every row without a same-instant row of its card
    tied = tx.duplicated(["TX_DATETIME", "CUSTOMER_ID"], keep=False)
    untied = np.sort(tx.loc[~tied, "TRANSACTION_ID"].to_numpy())
    pd.testing.assert_frame_equal(
        by_id.loc[untied, customer], shuffled_by_id.loc[untied, customer], check_exact=True
    )
    # while tied rows follow their input order: their windows differ
    assert tied.sum() > 50
    assert not by_id[customer].equals(shuffled_by_id[customer])


def test_history_days_needed() -> None:
    assert history_days_needed() == 37
    assert history_days_needed((2, 5), delay_days=3) == 8
    assert history_days_needed((30,), delay_days=1) == 31


@pytest.mark.parametrize("day", [40, 55])
def test_a_day_needs_exactly_history_days_needed_previous_days(day: int) -> None:
    # Given 70 days of transactions and the features computed on all of them
    tx = random_frame(4, 12_000, customers=40, terminals=15, days=70)
    days = (tx["TX_DATETIME"] - pd.Timestamp(MONDAY)).dt.days
    full = compute_features(tx)[days == day]
    needed = history_days_needed()

    def features_from(history: int) -> pd.DataFrame:
        kept = tx[(days >= day - history) & (days <= day)]
        out = compute_features(kept)
        return out[days[kept.index] == day]

    # When the day's features are computed from the 37 previous days and the day
    # Then they equal those computed from the whole data
    assert_same_features(features_from(needed), full)
    # and one day less of history is not enough
    with pytest.raises(AssertionError):
        assert_same_features(features_from(needed - 1), full)


def test_matches_pandas_groupby_rolling() -> None:
    # Given transactions stamped to the minute, in random order, with many equal timestamps
    tx = random_frame(5, 4000, customers=25, terminals=12, days=60, resolution=60 * SECOND)
    tx = tx.sample(frac=1.0, random_state=6)
    # Then the bench's pandas baseline (groupby + rolling, as in the handbook) agrees
    baseline = load_bench().pandas_baseline(tx)
    assert_same_features(compute_features(tx), baseline)


def test_sums_stay_exact_under_large_running_totals() -> None:
    # Given a customer with 50,000 transactions of ~1e8, sorted before a small spender, so
    # that a plain cumulative sum reaches ~5e12 (one unit in the last place ~1e-3)
    n_big = 50_000
    big = [(i, MONDAY - DAY + i * SECOND, 1, 1, 98_765_432.1, 0) for i in range(n_big)]
    small_amounts = [0.01, 123.45, 0.1, 0.2, 0.3, 7.77, 1e-3, 5.0]
    small = [
        (n_big + i, MONDAY + i * 12 * HOUR, 2, 2, amount, 0)
        for i, amount in enumerate(small_amounts)
    ]
    out = compute_features(frame(big + small))
    # Then the small spender's means are those of an exact sum
    expected = reference_features(frame(small))
    got = out.iloc[n_big:].set_index(expected.index)
    customer_columns = [c for c in FEATURE_COLUMNS if c.startswith("CUSTOMER_ID_AVG")]
    np.testing.assert_allclose(got[customer_columns], expected[customer_columns], atol=1e-12)
    assert math.isclose(got.iloc[-1]["CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW"], 136.831 / 8)
    # and the big spender's mean is its amount, to the last bits
    big_means = out.iloc[:n_big][customer_columns].to_numpy()
    np.testing.assert_allclose(big_means, 98_765_432.1, rtol=4e-16, atol=0)


def test_more_than_65536_customers_and_terminals() -> None:
    # Given 70,000 transactions, each by its own customer at its own terminal (sparse ids)
    n = 70_000
    tx = random_frame(7, n, customers=1, terminals=1, days=10)
    tx["CUSTOMER_ID"] = np.arange(n) * 3
    tx["TERMINAL_ID"] = np.arange(n) * 5 + 11
    out = compute_features(tx)
    # Then each is alone in its windows
    for n_days in (1, 7, 30):
        assert (out[f"CUSTOMER_ID_NB_TX_{n_days}DAY_WINDOW"] == 1).all()
        np.testing.assert_array_equal(
            out[f"CUSTOMER_ID_AVG_AMOUNT_{n_days}DAY_WINDOW"], tx["TX_AMOUNT"]
        )
        assert (out[f"TERMINAL_ID_NB_TX_{n_days}DAY_WINDOW"] == 0).all()
        assert (out[f"TERMINAL_ID_RISK_{n_days}DAY_WINDOW"] == 0).all()


def test_empty_input_gives_empty_features() -> None:
    tx = frame([(1, MONDAY, 1, 1, 1.0, 0)]).iloc[:0]
    out = compute_features(tx)
    assert tuple(out.columns) == ("TRANSACTION_ID", *FEATURE_COLUMNS)
    assert len(out) == 0


@pytest.mark.parametrize(
    ("windows", "delay_days"),
    [((), 7), ((1, 1), 7), ((0, 7), 7), ((1.5,), 7), ((True,), 7), ((1, 7), 0), ((1,), 2.0)],
)
def test_bad_windows_or_delay_are_refused(windows: tuple[object, ...], delay_days: object) -> None:
    tx = frame([(1, MONDAY, 1, 1, 1.0, 0)])
    with pytest.raises(ConfigError):
        compute_features(tx, windows=windows, delay_days=delay_days)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        history_days_needed(windows, delay_days)  # type: ignore[arg-type]


def test_missing_columns_or_values_are_refused() -> None:
    tx = frame([(1, MONDAY, 1, 1, 1.0, 0), (2, MONDAY, 1, 1, 2.0, 0)])
    with pytest.raises(DatasetError, match="TX_FRAUD"):
        compute_features(tx.drop(columns="TX_FRAUD"))
    with pytest.raises(DatasetError, match="non-finite"):
        compute_features(tx.assign(TX_AMOUNT=[1.0, float("nan")]))


@pytest.mark.parametrize("time_key", ["scaled time", "time ranks"])
@settings(max_examples=60, deadline=None)
@given(tx=transactions(), cut=st.floats(0, 1))
def test_first_row_gives_the_same_bits_for_the_rows_it_keeps(
    tx: pd.DataFrame, cut: float, time_key: str
) -> None:
    # Given random transactions and a first row (the rows before it are only look-back)
    first = round(cut * len(tx))
    arrays = {c: tx[c].to_numpy() for c in features.REQUIRED_COLUMNS}
    limit = 0 if time_key == "time ranks" else features._KEY_LIMIT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "_KEY_LIMIT", limit)
        # When only the rows from it on get features
        every = features.feature_arrays(arrays)
        kept = features.feature_arrays(arrays, first_row=first)
    # Then they are bit for bit those rows' features computed with all the others
    assert list(kept) == list(every)
    for name, values in every.items():
        assert kept[name].dtype == values.dtype
        assert kept[name].tobytes() == values[first:].tobytes(), name
    with pytest.raises(ConfigError, match="first_row"):
        features.feature_arrays(arrays, first_row=len(tx) + 1)

"""The transaction simulator: schema, determinism, and each rule of the handbook's model."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from batchml.errors import ConfigError
from batchml.fraud.data import datasets, schema
from batchml.fraud.data import simulate as sim
from batchml.fraud.data.simulate import SimulationConfig, simulate

# A radius of 10 on this sparser grid gives each customer ~12 terminals, as 5 does at full size.
SMALL = SimulationConfig(n_customers=200, n_terminals=400, n_days=40, radius=10.0, seed=7)
TUTORIAL = Path(__file__).parents[1] / "data" / "tutorial-datasets" / "training"


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate(SMALL)


def _brute_force_reach(config: SimulationConfig) -> npt.NDArray[np.bool_]:
    """(n_customers, n_terminals) bool: terminal strictly within radius, by plain distances."""
    customers, terminal_xy = sim._profiles(sim._spawn_streams(config.seed), config)
    offset = customers.xy[:, None, :] - terminal_xy[None, :, :]
    distance = np.hypot(offset[..., 0], offset[..., 1])
    return np.asarray(distance < config.radius, dtype=np.bool_)


def test_output_has_the_schema_columns_and_dtypes_and_survives_normalize(
    small: pd.DataFrame,
) -> None:
    assert list(small.columns) == list(schema.COLUMNS)
    assert {c: str(t) for c, t in small.dtypes.items()} == schema.COLUMNS
    assert isinstance(small.index, pd.RangeIndex)
    assert small.index.start == 0
    assert len(small) > 10_000
    pd.testing.assert_frame_equal(schema.normalize(small, "simulated"), small)


def test_same_seed_same_frame_other_seed_other_frame(small: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL), small)
    other = simulate(replace(SMALL, seed=SMALL.seed + 1))
    assert not other.equals(small)


def test_every_terminal_used_is_within_radius_of_its_customer(small: pd.DataFrame) -> None:
    reach = _brute_force_reach(SMALL)
    pairs = small[["CUSTOMER_ID", "TERMINAL_ID"]].to_numpy()
    assert reach[pairs[:, 0], pairs[:, 1]].all()
    # Given that radius, customers reach several terminals, and use more than one of them.
    assert small.groupby("CUSTOMER_ID")["TERMINAL_ID"].nunique().median() > 3


def test_customers_with_no_terminal_in_reach_make_no_transactions() -> None:
    # Given a radius so small that most customers have no terminal in reach
    config = SimulationConfig(n_customers=300, n_terminals=400, n_days=30, radius=1.5, seed=3)
    reach = _brute_force_reach(config)
    has_terminal = np.asarray(reach.any(axis=1), dtype=np.bool_)
    assert 0 < has_terminal.sum() < config.n_customers / 2
    # When simulated, Then exactly the customers with a terminal in reach (and an active enough
    # spending rate) transact, each only at terminals in reach.
    df = simulate(config)
    active = np.unique(df["CUSTOMER_ID"].to_numpy())
    assert has_terminal[active].all()
    assert len(active) > 0.8 * has_terminal.sum()
    assert reach[df["CUSTOMER_ID"], df["TERMINAL_ID"]].all()


def test_times_are_within_the_day_and_the_three_time_columns_agree(small: pd.DataFrame) -> None:
    seconds = small["TX_TIME_SECONDS"].to_numpy()
    days = small["TX_TIME_DAYS"].to_numpy()
    assert ((seconds // sim.DAY_SECONDS) == days).all()
    assert days.min() == 0
    assert days.max() == SMALL.n_days - 1
    start = pd.Timestamp(SMALL.start_date)
    expected = start + pd.to_timedelta(seconds, unit="s")
    assert (small["TX_DATETIME"].to_numpy() == expected.to_numpy()).all()
    # Around noon, with the handbook's spread (a normal of sd 20000 s cut to one day)
    time_of_day = seconds % sim.DAY_SECONDS
    assert abs(time_of_day.mean() - 43_200) < 600
    assert 17_500 < time_of_day.std() < 19_000


def test_transaction_ids_follow_datetime_order(small: pd.DataFrame) -> None:
    assert (small["TRANSACTION_ID"].to_numpy() == np.arange(len(small))).all()
    assert small["TX_DATETIME"].is_monotonic_increasing


def test_amounts_are_non_negative_with_at_most_two_decimals(small: pd.DataFrame) -> None:
    amount = small["TX_AMOUNT"].to_numpy()
    assert (amount >= 0).all()
    cents = amount * 100
    assert np.allclose(cents, np.round(cents), rtol=0, atol=1e-6)
    assert len(np.unique(np.round(cents) % 100)) > 90  # cents are drawn, not whole amounts
    # a negative draw is redrawn from U(0, 2·mean), not clipped to 0 (that would be ~2 %)
    assert (amount < 0.01).mean() < 0.001


def test_fraud_flag_matches_scenario(small: pd.DataFrame) -> None:
    scenario = small["TX_FRAUD_SCENARIO"]
    assert set(scenario.unique()) == {0, 1, 2, 3}
    assert (small["TX_FRAUD"] == (scenario > 0).astype("int64")).all()


def test_scenario_1_is_exactly_amount_above_220_among_scenario_0_and_1(
    small: pd.DataFrame,
) -> None:
    rows = small[small["TX_FRAUD_SCENARIO"] <= 1]
    assert ((rows["TX_FRAUD_SCENARIO"] == 1) == (rows["TX_AMOUNT"] > 220)).all()
    assert (rows["TX_FRAUD_SCENARIO"] == 1).sum() > 0


def test_scenario_2_frauds_fill_28_day_windows_at_their_terminals(small: pd.DataFrame) -> None:
    # Given, per terminal, the days of its scenario-2 frauds and of its clean transactions
    # (scenario 0 or 1: scenario 3 may overwrite a scenario-2 label, so it proves nothing)
    window = 28
    scenario = small["TX_FRAUD_SCENARIO"]
    frauds = small[scenario == 2].groupby("TERMINAL_ID")["TX_TIME_DAYS"].unique()
    clean = small[scenario <= 1].groupby("TERMINAL_ID")["TX_TIME_DAYS"].unique()
    assert len(frauds) > 0
    windows_needed = 0
    for terminal, days in frauds.items():
        clean_days = np.sort(clean.get(terminal, np.array([], dtype=np.int64)))
        for day in days:
            # Then some 28-day window starting at s in [day-27, day] holds no clean transaction
            starts = np.arange(max(0, day - window + 1), day + 1)
            lo = np.searchsorted(clean_days, starts, "left")
            hi = np.searchsorted(clean_days, starts + window, "left")
            assert (hi == lo).any(), f"terminal {terminal} day {day}: fraud beside clean days"
        # and few windows cover all its fraud days (at most 2 compromised terminals a day)
        covered_until = -1
        for day in np.sort(days):
            if day > covered_until:
                windows_needed += 1
                covered_until = day + window - 1
    assert windows_needed <= 2 * SMALL.n_days


def test_scenario_2_compromises_two_terminals_a_day_for_exactly_28_days() -> None:
    # Given every customer in reach of every terminal, ~19 transactions per terminal per day:
    # a terminal's compromised days are the days it has a scenario-2 fraud
    config = SimulationConfig(n_customers=1500, n_terminals=150, n_days=80, radius=200.0, seed=5)
    df = simulate(config)
    hot = df.loc[df["TX_FRAUD_SCENARIO"] == 2, ["TERMINAL_ID", "TX_TIME_DAYS"]].drop_duplicates()
    # Then on those days every transaction there is a fraud (scenario 3 may overwrite 2)
    at_hot = df.merge(hot, on=["TERMINAL_ID", "TX_TIME_DAYS"])
    assert at_hot["TX_FRAUD_SCENARIO"].isin([2, 3]).all()
    assert (at_hot["TX_AMOUNT"] > 220).any()  # scenario 1 was overwritten too
    # and the compromised days form runs of overlapping 28-day windows, two new ones a day
    grid = np.zeros((config.n_terminals, config.n_days + 2), dtype=np.int8)
    grid[hot["TERMINAL_ID"], hot["TX_TIME_DAYS"] + 1] = 1
    edges = np.diff(grid, axis=1)
    _, start = np.nonzero(edges == 1)
    _, end = np.nonzero(edges == -1)
    length = end - start
    assert len(length) > 40
    assert np.bincount(start, minlength=config.n_days).max() <= 2
    whole = length[end < config.n_days]  # runs not cut by the end of the simulation
    assert whole.min() == 28
    assert (whole == 28).mean() > 0.25  # a terminal compromised once


def test_later_scenarios_overwrite_earlier_ones() -> None:
    # Given so few terminals and customers that all are compromised every day
    config = SimulationConfig(n_customers=3, n_terminals=2, n_days=60, radius=200.0, seed=2)
    df = simulate(config)
    scenario = df["TX_FRAUD_SCENARIO"]
    assert len(df) > 60
    # Then every transaction is a fraud of scenario 2, or of scenario 3 where picked; none is
    # left as scenario 1 although many amounts (some multiplied by 5 several times) exceed 220
    assert set(scenario.unique()) == {2, 3}
    assert (df["TX_AMOUNT"] > 220).sum() > 5
    # each transaction sits in up to 14 windows that each pick a third of it, and, as in the
    # handbook, one picked by k windows is multiplied by 5 k times
    assert (scenario == 3).mean() > 0.5
    assert df["TX_AMOUNT"].max() > 100 * 5**3


def test_scenario_3_amounts_are_five_times_the_customers_usual_amounts(
    small: pd.DataFrame,
) -> None:
    scenario = small["TX_FRAUD_SCENARIO"]
    usual = small[scenario == 0].groupby("CUSTOMER_ID")["TX_AMOUNT"].median()
    frauds = small[scenario == 3]
    assert len(frauds) > 20
    ratio = frauds["TX_AMOUNT"].to_numpy() / usual.loc[frauds["CUSTOMER_ID"]].to_numpy()
    assert 3.5 < np.median(ratio) < 7
    # 5 × an amount in cents is a multiple of 5 cents
    twentieths = frauds["TX_AMOUNT"].to_numpy() * 20
    assert np.allclose(twentieths, np.round(twentieths), rtol=0, atol=1e-6)


def test_scenario_3_picks_a_third_of_the_pooled_window_and_nothing_else() -> None:
    # Given 3 customers compromised on day 2 (of 30) and transactions before, in and after
    # their 14-day window (days 2..15), plus an uninvolved customer
    days_of = {
        0: [0, 1, 2, 3, 5, 8, 13, 14, 15, 29],  # 7 in the window
        1: [2, 2, 4, 6, 9, 11, 14, 20],  # 7 in the window
        2: [1, 3, 3, 7, 15, 16, 25],  # 4 in the window, one just after
        3: list(range(2, 11)),  # not compromised
    }
    customer = np.repeat(list(days_of), [len(d) for d in days_of.values()]).astype(np.int64)
    day = np.concatenate([np.array(d, dtype=np.int64) for d in days_of.values()])
    tx = sim._Transactions(
        customer=customer,
        terminal=np.zeros_like(customer),
        day=day,
        seconds=day * sim.DAY_SECONDS,
        amount=np.ones(len(day)),
    )
    compromised = np.full((30, 3), 99, dtype=np.int64)  # customer 99 has no transactions
    compromised[2] = [2, 0, 1]
    in_window = (customer < 3) & (day >= 2) & (day <= 15)
    for seed in range(20):
        times = sim._scenario_3_multiplicity(np.random.default_rng(seed), tx, compromised, 30)
        # Then int(18 / 3) = 6 of the 18 pooled transactions are picked, once each
        assert times.sum() == 6
        assert set(np.unique(times)) <= {0, 1}
        assert not times[~in_window].any()


def test_distinct_per_day_gives_distinct_uniform_ids() -> None:
    rng = np.random.default_rng(0)
    picks = sim._distinct_per_day(rng, 30_000, 3, 6)
    assert picks.shape == (30_000, 3)
    assert ((picks >= 0) & (picks < 6)).all()
    ordered = np.sort(picks, axis=1)
    assert (np.diff(ordered, axis=1) > 0).all()
    # each id is in a day's pick with probability 3/6
    frequency = np.bincount(picks.ravel(), minlength=6) / 30_000
    assert np.allclose(frequency, 0.5, atol=0.015)
    # and each column alone is uniform too (the stepping over earlier picks is unbiased)
    for column in picks.T:
        assert np.allclose(np.bincount(column, minlength=6) / 30_000, 1 / 6, atol=0.015)
    assert (np.sort(sim._distinct_per_day(rng, 5, 4, 2), axis=1) == [0, 1]).all()


def test_in_any_window_matches_a_brute_force_check() -> None:
    rng = np.random.default_rng(1)
    n_days, length, n_entities = 25, 4, 6
    hit = sim._distinct_per_day(rng, n_days, 2, n_entities)
    entity = rng.integers(0, n_entities, size=2000)
    day = rng.integers(0, n_days, size=2000)
    got = sim._in_any_window(entity, day, hit, n_days, length)
    expected = np.array(
        [
            any(e in hit[s] for s in range(max(0, d - length + 1), d + 1))
            for e, d in zip(entity, day, strict=True)
        ]
    )
    assert (got == expected).all()
    assert 0 < got.sum() < len(got)


def test_split_days_covers_every_row_once_in_date_order(small: pd.DataFrame) -> None:
    parts = list(datasets.split_days(small))
    days = [day for day, _ in parts]
    expected_days = pd.date_range(SMALL.start_date, periods=SMALL.n_days).strftime("%Y-%m-%d")
    assert days == list(expected_days)
    for day, part in parts:
        assert isinstance(part.index, pd.RangeIndex)
        assert part.index.start == 0
        assert (part["TX_DATETIME"].dt.strftime("%Y-%m-%d") == day).all()
    pd.testing.assert_frame_equal(pd.concat([p for _, p in parts], ignore_index=True), small)


def test_split_days_groups_unsorted_rows_in_time_order_ties_in_input_order(
    small: pd.DataFrame,
) -> None:
    shuffled = small.sample(frac=1.0, random_state=0).reset_index(drop=True)
    parts = dict(datasets.split_days(shuffled))
    assert list(parts) == sorted(parts)
    assert sum(len(p) for p in parts.values()) == len(small)
    day_3 = pd.Timestamp(SMALL.start_date) + pd.Timedelta(days=3)
    rows = shuffled[shuffled["TX_DATETIME"].dt.normalize() == day_3]
    expected = rows.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(parts[str(day_3.date())], expected)
    assert list(datasets.split_days(small.iloc[:0])) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"n_customers": 0},
        {"n_terminals": -1},
        {"n_days": 0},
        {"radius": 0.0},
        {"start_date": "2018-04-01T12:00"},
        {"start_date": "April 1st"},
    ],
)
def test_invalid_config_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimulationConfig(**changes)


def test_first_days_resemble_the_tutorials_sample_files() -> None:
    tutorial = pd.concat(
        [schema.normalize(pd.read_pickle(f), f.name) for f in sorted(TUTORIAL.glob("*.pkl"))],
        ignore_index=True,
    )
    n_days = tutorial["TX_TIME_DAYS"].nunique()
    ours = simulate(SimulationConfig(n_days=n_days))
    assert ours["TX_DATETIME"].min().date() == tutorial["TX_DATETIME"].min().date()
    assert abs(len(ours) / len(tutorial) - 1) < 0.04
    for frame in (ours, tutorial):
        assert frame["CUSTOMER_ID"].max() < 5000
        assert frame["TERMINAL_ID"].max() < 10_000
        assert frame["TX_FRAUD"].mean() < 0.004  # scenarios 2 and 3 only ramp up
    genuine = [f.loc[f["TX_FRAUD"] == 0, "TX_AMOUNT"] for f in (ours, tutorial)]
    assert abs(genuine[0].mean() / genuine[1].mean() - 1) < 0.05
    assert abs(genuine[0].std() / genuine[1].std() - 1) < 0.05
    quantiles = [g.quantile([0.1, 0.5, 0.9]).to_numpy() for g in genuine]
    assert np.allclose(quantiles[0], quantiles[1], rtol=0.05, atol=1.0)


@pytest.mark.slow
def test_standard_size_is_fast_and_matches_the_handbooks_figures() -> None:
    began = time.perf_counter()
    df = simulate(SimulationConfig())
    elapsed = time.perf_counter() - began
    assert elapsed < 15, f"the standard simulation took {elapsed:.1f} s"
    # The handbook: 1,754,155 transactions (9,585 a day) and 14,681 frauds (0.84 %). The daily
    # count depends on the 5,000 customers' drawn rates: its sd across seeds is ~80 a day.
    per_day = df.groupby("TX_TIME_DAYS").size()
    assert len(per_day) == 183
    assert 9_450 < per_day.mean() < 9_950
    assert 0.007 < df["TX_FRAUD"].mean() < 0.010
    daily_frauds = df.groupby("TX_TIME_DAYS")["TX_FRAUD"].sum()
    assert daily_frauds.iloc[:7].mean() < daily_frauds.iloc[60:].mean() / 2
    pd.testing.assert_frame_equal(schema.normalize(df, "standard"), df)

"""The handbook's test protocol: test period, known-compromised exclusion, card precision@k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.fraud.evaluation.metrics import card_precision_at_k, summary
from batchml.fraud.evaluation.protocol import Protocol, build_test_set, keep_mask
from batchml.fraud.features.pipeline import FeatureSpec


def days(*texts: str) -> np.ndarray:
    return np.array(texts, dtype="datetime64[D]")


def test_the_test_week_starts_after_the_label_delay() -> None:
    protocol = Protocol()
    period = protocol.period("2018-07-31")
    assert period == [f"2018-08-{d:02d}" for d in range(8, 15)]
    # the frauds that count: the handbook's training week, then the delay period
    assert protocol.known_since(period[0]) == "2018-07-25"
    assert Protocol(known_days=0).known_since(period[0]) is None
    assert Protocol(test_start="2018-09-01", test_days=2).period("2018-07-31") == [
        "2018-09-01",
        "2018-09-02",
    ]


def test_a_card_leaves_the_test_set_once_its_fraud_is_known() -> None:
    """Given card 1 defrauded on 01-01 and card 2 on 01-05, with a 7-day delay,
    then on 01-09 only card 1 is known (01-05 > 01-09 - 8), and on 01-13 both are."""
    fraud_day, fraud_card = days("2018-01-01", "2018-01-05"), np.array([1, 2])
    row_day = days("2018-01-09", "2018-01-09", "2018-01-09", "2018-01-13", "2018-01-13")
    row_card = np.array([1, 2, 3, 2, 3])
    keep = keep_mask(row_day, row_card, fraud_day, fraud_card, delay=7)
    assert keep.tolist() == [False, True, True, False, True]


def test_nothing_is_excluded_without_known_frauds() -> None:
    keep = keep_mask(days("2018-01-09"), np.array([1]), days(), np.array([], dtype=int), delay=7)
    assert keep.tolist() == [True]


def test_card_precision_takes_each_cards_max_and_removes_detected_cards() -> None:
    """Day 1: A (0.9, fraud), B (max 0.8, legit), C (0.7, fraud): top 2 = A, B -> 1/2, A found.
    Day 2: A is gone; C (0.6, fraud), D (0.5): top 2 = C, D -> 1/2. Mean 0.5."""
    day = ["d1", "d1", "d1", "d1", "d2", "d2", "d2"]
    card = ["A", "B", "B", "C", "A", "C", "D"]
    y = [1, 0, 0, 1, 1, 1, 0]
    s = [0.9, 0.1, 0.8, 0.7, 0.95, 0.6, 0.5]
    assert card_precision_at_k(day, card, y, s, k=2) == pytest.approx(0.5)
    # without the removal, day 2's top 2 would be A and C (precision 1): the rule matters
    assert card_precision_at_k(day[4:], card[4:], y[4:], s[4:], k=2) == pytest.approx(1.0)


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    assert card_precision_at_k(["d"], [1], [1], [0.3], k=100) == pytest.approx(0.01)
    assert card_precision_at_k([], [], [], [], k=100) is None


def test_equal_scores_are_ranked_by_card_id() -> None:
    # cards 2 and 1 tie; card 1 (legit) ranks first, so the top 1 holds no fraud
    assert card_precision_at_k(["d", "d"], [2, 1], [1, 0], [0.5, 0.5], k=1) == 0.0


def test_summary_is_none_where_a_metric_is_undefined() -> None:
    result = summary(np.zeros(4, dtype=int), np.linspace(0, 1, 4))
    assert result["roc_auc"] is None and result["average_precision"] is None
    assert result["accuracy"] == pytest.approx(0.5) and result["frauds"] == 0  # 2 of 4 ≥ 0.5


# -- against a plain transcription of the handbook's procedure --------------------------------


def handbook_test_set(tx: pd.DataFrame, train_start: int, delta_train: int, delay: int,
                      delta_test: int) -> pd.DataFrame:  # fmt: skip
    """``get_train_test_set``'s test part, day by day, with Python sets."""
    day_of = tx["TX_TIME_DAYS"]
    train = tx[(day_of >= train_start) & (day_of < train_start + delta_train)]
    known = set(train[train["TX_FRAUD"] == 1].CUSTOMER_ID)
    parts = []
    for day in range(delta_test):
        test_day = tx[day_of == train_start + delta_train + delay + day]
        delay_day = tx[day_of == train_start + delta_train + day - 1]
        known |= set(delay_day[delay_day["TX_FRAUD"] == 1].CUSTOMER_ID)
        parts.append(test_day[~test_day.CUSTOMER_ID.isin(known)])
    return pd.concat(parts)


def handbook_card_precision(test: pd.DataFrame, scores: pd.Series, k: int) -> float:
    """``card_precision_top_k`` with detected cards removed, one day at a time."""
    frame = test.assign(predictions=scores)
    detected: list[int] = []
    precisions = []
    day_of = frame["TX_TIME_DAYS"]
    for day in sorted(day_of.unique()):
        df_day = frame[day_of == day][["predictions", "CUSTOMER_ID", "TX_FRAUD"]]
        df_day = df_day[~df_day.CUSTOMER_ID.isin(detected)]
        per_card = df_day.groupby("CUSTOMER_ID").max().reset_index()
        top = per_card.sort_values(["predictions", "CUSTOMER_ID"], ascending=[False, True])[:k]
        found = list(top[top.TX_FRAUD == 1].CUSTOMER_ID)
        precisions.append(len(found) / k)
        detected.extend(found)
    return float(np.mean(precisions))


def test_protocol_matches_the_handbook_procedure_on_simulated_data() -> None:
    tx = simulate(SimulationConfig(n_customers=300, n_terminals=600, n_days=40, seed=3))
    start, delta, delay, n_test = 20, 7, 7, 7  # train on days 20-26, test on days 34-40
    expected = handbook_test_set(tx, start, delta, delay, n_test)

    day0 = pd.Timestamp("2018-04-01")
    trained_through = (day0 + pd.Timedelta(days=start + delta - 1)).date().isoformat()
    protocol = Protocol(delay=delay, known_days=delta, test_days=n_test)
    period = protocol.period(trained_through)
    in_period = tx.TX_DATETIME.dt.strftime("%Y-%m-%d").isin(period)
    table = tx.loc[in_period, ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD"]]
    spec = FeatureSpec()
    for name in spec.inputs:
        table[name] = 0.0
    since = day0 + pd.Timedelta(days=start)
    frauds = tx[(tx["TX_FRAUD"] == 1) & (tx["TX_DATETIME"] >= since)]
    test = build_test_set(table, frauds[["TX_DATETIME", "CUSTOMER_ID"]], spec, delay)

    assert test.excluded == int(in_period.sum()) - len(expected) > 0
    assert np.array_equal(test.card, expected.CUSTOMER_ID.to_numpy())
    scores = np.random.default_rng(0).random(len(expected))
    ours = test.metrics(scores, top_k=20)["card_precision_at_k"]
    theirs = handbook_card_precision(expected, pd.Series(scores, index=expected.index), k=20)
    assert ours == pytest.approx(theirs)

"""A slow, obviously correct reference for batchml.fraud.features.engineered: plain loops over rows.

Each feature is computed straight from its definition, for every row by scanning every row;
quadratic, for a few hundred rows at most. Rows are ordered by TX_DATETIME, equal timestamps in
input order (pandas rolling's rule: it windows over the rows in their order): a row is "up to"
the current one when it is at or before it in that order.

- TX_DURING_WEEKEND: 1 if the weekday is Saturday or Sunday; TX_DURING_NIGHT: 1 if hour <= 6.
- rolling(n days) at row r over an entity: the rows of r's entity with time in
  (t_r - n days, t_r] and up to r. This is pandas ``rolling(f"{n}D")`` on the entity's
  time-sorted series.
- Customer, per window n: the count and mean TX_AMOUNT of rolling(n).
- Terminal, per window n, with delay d: NB_TX_WINDOW = count of rolling(d + n) minus count of
  rolling(d); RISK = (frauds of rolling(d + n) minus frauds of rolling(d)) / NB_TX_WINDOW, or 0
  when NB_TX_WINDOW is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

NS_PER_DAY = 86_400 * 10**9


class Row(NamedTuple):
    position: int  # in the input
    tid: int
    time: int  # nanoseconds since the epoch
    customer: int
    terminal: int
    amount: float
    fraud: int


def rows_of(tx: pd.DataFrame) -> list[Row]:
    """The transactions as Python values, in input order."""
    return [
        Row(
            position=position,
            tid=int(tid),
            time=pd.Timestamp(stamp).as_unit("ns").value,
            customer=int(customer),
            terminal=int(terminal),
            amount=float(amount),
            fraud=int(fraud),
        )
        for position, (tid, stamp, customer, terminal, amount, fraud) in enumerate(
            zip(
                tx["TRANSACTION_ID"],
                tx["TX_DATETIME"],
                tx["CUSTOMER_ID"],
                tx["TERMINAL_ID"],
                tx["TX_AMOUNT"],
                tx["TX_FRAUD"],
                strict=True,
            )
        )
    ]


def rolling(rows: list[Row], current: Row, entity: str, days: int) -> list[Row]:
    """The rows of ``current``'s entity in (t - days, t], up to ``current`` in input order."""
    found = []
    for other in rows:
        same_entity = getattr(other, entity) == getattr(current, entity)
        in_time = current.time - days * NS_PER_DAY < other.time <= current.time
        up_to_current = (other.time, other.position) <= (current.time, current.position)
        if same_entity and in_time and up_to_current:
            found.append(other)
    return found


def customer_features(rows: list[Row], current: Row, n: int) -> list[float]:
    window = rolling(rows, current, "customer", n)
    return [float(len(window)), math.fsum(r.amount for r in window) / len(window)]


def terminal_features(rows: list[Row], current: Row, n: int, delay: int) -> list[float]:
    delay_rows = rolling(rows, current, "terminal", delay)
    delay_window_rows = rolling(rows, current, "terminal", delay + n)
    nb_tx_window = len(delay_window_rows) - len(delay_rows)
    nb_fraud_window = sum(r.fraud for r in delay_window_rows) - sum(r.fraud for r in delay_rows)
    risk = nb_fraud_window / nb_tx_window if nb_tx_window else 0.0
    return [float(nb_tx_window), risk]


def reference_features(
    tx: pd.DataFrame, windows: Sequence[int] = (1, 7, 30), delay_days: int = 7
) -> pd.DataFrame:
    """TRANSACTION_ID then the features, one row per input row, in input order and index."""
    rows = rows_of(tx)
    records = []
    for current in rows:
        stamp = pd.Timestamp(current.time, unit="ns")
        record: list[float] = [
            current.tid,
            1 if stamp.weekday() >= 5 else 0,
            1 if stamp.hour <= 6 else 0,
        ]
        for n in windows:
            record += customer_features(rows, current, n)
        for n in windows:
            record += terminal_features(rows, current, n, delay_days)
        records.append(record)
    columns = ["TRANSACTION_ID", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
    for n in windows:
        columns += [f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"]
    for n in windows:
        columns += [f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW", f"TERMINAL_ID_RISK_{n}DAY_WINDOW"]
    return pd.DataFrame(records, columns=columns, index=tx.index)

"""The baseline features written with Polars, for bench/features.py (``pip install .[bench]``).

Per entity, ``rolling_sum_by`` over TX_DATETIME with ``closed="right"`` gives the time window
``(t - n days, t]``. Polars puts every row of the current timestamp in it; pandas (and
batchml) only the rows up to the current one in input order, so the customer sums subtract
what follows the row among its card's same-instant rows. The terminal windows are differences
``(d + n) - d`` of windows that end at the same row, where ties cancel.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import polars as pl


def polars_features(
    tx: pd.DataFrame, windows: Sequence[int] = (1, 7, 30), delay_days: int = 7
) -> pd.DataFrame:
    """TRANSACTION_ID then the 14 features, in ``tx``'s row order and index."""
    frame = pl.from_pandas(
        tx[["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]]
    ).with_row_index("row")
    frame = frame.sort("TX_DATETIME", maintain_order=True).with_columns(
        one=pl.lit(1, dtype=pl.Int64), fraud=pl.col("TX_FRAUD").cast(pl.Int64)
    )
    same = ["CUSTOMER_ID", "TX_DATETIME"]
    later_count = pl.len().over(same) - pl.int_range(1, pl.len() + 1).over(same)
    later_sum = pl.col("TX_AMOUNT").sum().over(same) - pl.col("TX_AMOUNT").cum_sum().over(same)

    def window(column: str, days: int, entity: str) -> pl.Expr:
        return (
            pl.col(column)
            .rolling_sum_by("TX_DATETIME", window_size=f"{days}d", closed="right")
            .over(entity)
        )

    exprs = [
        (pl.col("TX_DATETIME").dt.weekday() >= 6).cast(pl.Int64).alias("TX_DURING_WEEKEND"),
        (pl.col("TX_DATETIME").dt.hour() <= 6).cast(pl.Int64).alias("TX_DURING_NIGHT"),
    ]
    for n in windows:
        count = window("one", n, "CUSTOMER_ID") - later_count
        total = window("TX_AMOUNT", n, "CUSTOMER_ID") - later_sum
        exprs += [
            count.cast(pl.Float64).alias(f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"),
            (total / count).alias(f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"),
        ]
    for n in windows:
        count = window("one", delay_days + n, "TERMINAL_ID") - window(
            "one", delay_days, "TERMINAL_ID"
        )
        frauds = window("fraud", delay_days + n, "TERMINAL_ID") - window(
            "fraud", delay_days, "TERMINAL_ID"
        )
        exprs += [
            count.cast(pl.Float64).alias(f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"),
            pl.when(count > 0)
            .then(frauds / count)
            .otherwise(0.0)
            .alias(f"TERMINAL_ID_RISK_{n}DAY_WINDOW"),
        ]
    out = frame.select("row", "TRANSACTION_ID", *exprs).sort("row").drop("row")
    return out.to_pandas().set_index(tx.index)

"""Benchmark: compute_features and ``batchml fraud features`` against pandas and Polars code.

The reference is the customary pandas code, the handbook's: ``groupby(entity).apply`` of a
per-entity function that sorts the entity's rows by TX_DATETIME, indexes them by it and takes
time-based ``rolling(f"{n}D")`` counts and sums (``pandas_customary``; customers then
terminals, one Python call per entity, new columns assigned through lists). It is written here
afresh, with one change: its sort is stable, so equal timestamps keep the input order (pandas'
rule, which compute_features follows; the handbook's default quicksort may swap same-second
transactions of one card). The two time flags are vectorised (the handbook applies a Python
function per row for them), so the reference's time is that of its windows. A second pandas
variant, already optimised, is printed for information: one ``groupby().rolling()`` per window
over the whole frame (``pandas_baseline``). The Polars reference (bench/polars_reference.py,
``pip install .[bench]``) computes the same windows. All run on the same simulated data in this
process; the script checks that every reference agrees with compute_features to 1e-9, then
prints the best of ``--repeat`` wall times of each (``--pandas-repeat`` for the pandas ones),
their ratios, and compute_features' peak memory: the tracemalloc peak of the allocations made
during one extra, untimed call (numpy and pandas buffers included, the input frame not).

Then the command users run: the days are stored on a fresh root (one Parquet file per day) and
``batchml fraud features <every day> --out …`` runs as a process (its wall time, start-up
included, and its peak RSS); its output must equal compute_features on the same rows. Targets:
``fraud features`` within 2× of compute_features, ≥ 30× the customary pandas code, ≥ 3× Polars.
Last, the cost of the behaviour feature set (:mod:`batchml.fraud.features.behaviour`): its time
beside compute_features' (the pandas and Polars codes compute the handbook's 15 inputs only).

    .venv/bin/python bench/features.py                 # the standard 1.75 M-row data set
    .venv/bin/python bench/features.py --customers 500 --terminals 1000 --days 60
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from batchml.fraud.features.engineered import compute_features, feature_columns
from batchml.fraud.features.pipeline import FeatureSpec, features_of

TOLERANCE = 1e-9


def _customer_windows(customer: pd.DataFrame, windows: Sequence[int]) -> pd.DataFrame:
    """One customer's transactions with its spending windows, the handbook's way.

    The customary per-entity function: sort the entity's rows by time, index them by
    TX_DATETIME, take ``rolling(f"{n}D")`` count and sum of TX_AMOUNT for each window and store
    them as new columns (through Python lists), then index the rows by TRANSACTION_ID.
    """
    customer = customer.sort_values("TX_DATETIME", kind="stable")
    customer.index = customer["TX_DATETIME"]
    for n in windows:
        rolling = customer["TX_AMOUNT"].rolling(f"{n}D")
        count, total = rolling.count(), rolling.sum()
        customer[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = list(count)
        customer[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = list(total / count)
    customer.index = customer["TRANSACTION_ID"]
    return customer


def _terminal_windows(
    terminal: pd.DataFrame, windows: Sequence[int], delay_days: int
) -> pd.DataFrame:
    """One terminal's transactions with its delayed count and risk windows, the handbook's way:
    ``rolling(f"{d + n}D") - rolling(f"{d}D")`` of the fraud count and sum, NaN risk -> 0."""
    terminal = terminal.sort_values("TX_DATETIME", kind="stable")
    terminal.index = terminal["TX_DATETIME"]
    recent = terminal["TX_FRAUD"].rolling(f"{delay_days}D")
    recent_frauds, recent_count = recent.sum(), recent.count()
    for n in windows:
        rolling = terminal["TX_FRAUD"].rolling(f"{delay_days + n}D")
        count = rolling.count() - recent_count
        frauds = rolling.sum() - recent_frauds
        terminal[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = list(count)
        terminal[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = list(frauds / count)
    terminal.index = terminal["TRANSACTION_ID"]
    return terminal.fillna(0)


def pandas_customary(
    tx: pd.DataFrame, windows: Sequence[int] = (1, 7, 30), delay_days: int = 7
) -> pd.DataFrame:
    """The features as the handbook's code computes them: ``groupby(entity).apply`` of the
    per-entity functions above, customers then terminals (one Python call per entity)."""
    df = tx.copy()
    df["TX_DURING_WEEKEND"] = (df["TX_DATETIME"].dt.day_of_week >= 5).astype("int64")
    df["TX_DURING_NIGHT"] = (df["TX_DATETIME"].dt.hour <= 6).astype("int64")
    df = df.groupby("CUSTOMER_ID", group_keys=False).apply(
        lambda rows: _customer_windows(rows, windows), include_groups=False
    )
    df = df.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    df = df.groupby("TERMINAL_ID", group_keys=False).apply(
        lambda rows: _terminal_windows(rows, windows, delay_days), include_groups=False
    )
    names = list(feature_columns(windows))
    ordered = df.loc[tx["TRANSACTION_ID"].to_numpy(), names]
    ordered.insert(0, "TRANSACTION_ID", tx["TRANSACTION_ID"].to_numpy())
    return ordered.set_index(tx.index)


def _rolled(df: pd.DataFrame, entity: str, column: str, days: int) -> pd.DataFrame:
    """Count and sum of ``column`` over each entity's ``rolling(f"{days}D")``, by TRANSACTION_ID.

    ``df`` is in time order (ties in input order); a stable sort by entity keeps that order
    inside each entity, which is the order groupby().rolling() returns its results in.
    """
    by_entity = df.sort_values(entity, kind="stable")
    rolling = by_entity.set_index("TX_DATETIME").groupby(entity)[column].rolling(f"{days}D")
    return pd.DataFrame(
        {"count": rolling.count().to_numpy(), "sum": rolling.sum().to_numpy()},
        index=by_entity["TRANSACTION_ID"].to_numpy(),
    )


def pandas_baseline(
    tx: pd.DataFrame, windows: Sequence[int] = (1, 7, 30), delay_days: int = 7
) -> pd.DataFrame:
    """The same features with pandas, optimised: one ``groupby().rolling()`` per entity and
    window over the whole frame (no Python call per entity), then differences."""
    df = tx.sort_values("TX_DATETIME", kind="stable")
    out = pd.DataFrame(index=df["TRANSACTION_ID"].to_numpy())
    out["TX_DURING_WEEKEND"] = (df["TX_DATETIME"].dt.day_of_week >= 5).astype("int64").to_numpy()
    out["TX_DURING_NIGHT"] = (df["TX_DATETIME"].dt.hour <= 6).astype("int64").to_numpy()
    for n in windows:
        customer = _rolled(df, "CUSTOMER_ID", "TX_AMOUNT", n)
        out[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = customer["count"]
        out[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = customer["sum"] / customer["count"]
    delay = _rolled(df, "TERMINAL_ID", "TX_FRAUD", delay_days)
    for n in windows:
        delay_window = _rolled(df, "TERMINAL_ID", "TX_FRAUD", delay_days + n)
        nb_tx = delay_window["count"] - delay["count"]
        out[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = nb_tx
        out[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = (
            (delay_window["sum"] - delay["sum"]) / nb_tx
        ).fillna(0)
    ordered = out.loc[tx["TRANSACTION_ID"].to_numpy()]
    ordered.insert(0, "TRANSACTION_ID", tx["TRANSACTION_ID"].to_numpy())
    return ordered.set_index(tx.index)


def max_abs_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """The largest absolute difference over all feature columns (same columns and rows)."""
    if list(ours.columns) != list(theirs.columns):
        raise AssertionError(f"columns differ: {list(ours.columns)} != {list(theirs.columns)}")
    if not np.array_equal(ours["TRANSACTION_ID"], theirs["TRANSACTION_ID"]):
        raise AssertionError("rows are not in the same order")
    return max(
        float(np.max(np.abs(ours[c].to_numpy(np.float64) - theirs[c].to_numpy(np.float64))))
        for c in ours.columns[1:]
    )


def _best_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak_bytes(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _simulate(customers: int, terminals: int, days: int, seed: int) -> pd.DataFrame:
    from batchml.fraud.data.simulate import SimulationConfig, simulate

    config = SimulationConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    return simulate(config)


def run_cli(tx: pd.DataFrame, workdir: str) -> tuple[float, float, pd.DataFrame]:
    """Store ``tx`` by day, run ``batchml fraud features`` on every day: (seconds, MB, output)."""
    from batchml.fraud.data import datasets
    from batchml.storage import Storage

    root = os.path.join(workdir, "root")
    storage = Storage(root)
    days = [day for day, part in datasets.split_days(tx) if datasets.write_day(storage, day, part)]
    out = os.path.join(workdir, "features.parquet")
    command = [sys.executable, "-m", "batchml", "--root", root, "fraud", "features", *days]
    started = time.perf_counter()
    # posix_spawn (vfork): a forked copy of this process, gigabytes of frames, would count in
    # the child's peak RSS before its exec
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = os.posix_spawn(
            sys.executable, [*command, "--out", out], os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)],
        )  # fmt: skip
    finally:
        os.close(null)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"FAIL: {' '.join(command[:6])} … exited {status}")
    return seconds, usage.ru_maxrss / 1024, pd.read_parquet(out)


def _compare_cli(tx: pd.DataFrame, ours: pd.DataFrame, table: pd.DataFrame) -> float:
    by_id = ours.set_index("TRANSACTION_ID").loc[table["TRANSACTION_ID"].to_numpy()]
    return max(
        float(np.max(np.abs(table[c].to_numpy(np.float64) - by_id[c].to_numpy(np.float64))))
        for c in feature_columns()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; best is kept")
    parser.add_argument(
        "--pandas-repeat", type=int, default=1, help="timed runs of the optimised pandas code"
    )
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from polars_reference import polars_features  # the bench extra: pip install .[bench]

    start = time.perf_counter()
    tx = _simulate(args.customers, args.terminals, args.days, args.seed)
    print(
        f"data: {len(tx):,} transactions, {args.customers} customers, {args.terminals} "
        f"terminals, {args.days} days (simulated in {time.perf_counter() - start:.1f} s); "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    ours = compute_features(tx)
    started = time.perf_counter()  # one timed run, whose result is checked: it takes minutes
    customary = pandas_customary(tx)
    slow = time.perf_counter() - started
    for name, theirs in (
        ("the customary pandas code", customary),
        ("the optimised pandas code", pandas_baseline(tx)),
        ("polars", polars_features(tx)),
    ):
        difference = max_abs_difference(ours, theirs)
        print(f"agreement with {name}: max |difference| over 14 features = {difference:.3g}")
        if not difference <= TOLERANCE:
            raise SystemExit(f"FAIL: {name} and compute_features differ by more than {TOLERANCE}")
    del customary

    fast = _best_time(lambda: compute_features(tx), args.repeat)
    polar = _best_time(lambda: polars_features(tx), args.repeat)
    grouped = _best_time(lambda: pandas_baseline(tx), args.pandas_repeat)
    fast_peak = _peak_bytes(lambda: compute_features(tx))
    behaviour = FeatureSpec(feature_set="behaviour")
    wide = _best_time(lambda: features_of(tx, behaviour), args.repeat)
    with tempfile.TemporaryDirectory(prefix="batchml-features-") as workdir:
        cli, cli_mb, table = run_cli(tx, workdir)
    difference = _compare_cli(tx, ours, table)
    if len(table) != len(tx) or not difference <= TOLERANCE:
        raise SystemExit(
            f"FAIL: fraud features output differs from compute_features ({difference})"
        )
    mib = 2**20
    print(f"compute_features     : {fast:8.3f} s   peak {fast_peak / mib:8.1f} MiB (tracemalloc)")
    print(f"polars reference     : {polar:8.3f} s")
    print(f"pandas, customary    : {slow:8.3f} s   (groupby.apply per entity: the reference)")
    print(f"pandas, optimised    : {grouped:8.3f} s   (groupby().rolling(), for information)")
    print(f"batchml fraud features: {cli:7.3f} s   peak RSS {cli_mb:6.0f} MB (the process, "
          f"start-up, {args.days} day reads and cache writes included)")  # fmt: skip
    print(f"fraud features / compute_features : {cli / fast:6.2f}x  (target <= 2)")
    print(f"pandas customary / fraud features : {slow / cli:6.1f}x  (target >= 30)")
    print(f"polars / fraud features           : {polar / cli:6.1f}x  (target >= 3)")
    print(f"pandas customary / compute_features: {slow / fast:5.1f}x")
    print(f"pandas optimised / fraud features : {grouped / cli:6.1f}x")
    print(f"polars / compute_features         : {polar / fast:6.1f}x")
    extra = len(behaviour.inputs) - 15
    print(f"feature set behaviour (+{extra} columns): {wide:6.3f} s, {wide / fast:4.2f}x "
          f"compute_features; pandas (15 inputs) / it {slow / wide:5.1f}x, polars / it "
          f"{polar / wide:4.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()

"""Importing datasets: validation, Parquet conversion, the tutorial pickles through the CLI.

The pickle unpickler itself (attacks, bombs, what still loads) is tested in test_safe_pickle.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchml.errors import DatasetError
from batchml.fraud.data import datasets
from batchml.fraud.data.schema import COLUMNS
from batchml.storage import Storage
from tests.support.cli import run_cli

TUTORIAL = Path(__file__).parents[1] / "data" / "tutorial-datasets"


def frame(n: int = 5, day: str = "2018-04-01") -> pd.DataFrame:
    start = pd.Timestamp(day)
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n),
            "TX_DATETIME": [start + pd.Timedelta(minutes=10 * i) for i in range(n)],
            "CUSTOMER_ID": np.arange(n) % 3,
            "TERMINAL_ID": np.arange(n) % 2,
            "TX_AMOUNT": np.linspace(5, 50, n),
            "TX_TIME_SECONDS": np.arange(n) * 600,
            "TX_TIME_DAYS": np.zeros(n, dtype=int),
            "TX_FRAUD": np.array([0, 1] * n)[:n],
            "TX_FRAUD_SCENARIO": np.array([0, 1] * n)[:n],
        }
    )


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "root")


def test_parquet_and_csv_are_validated_and_stored_by_day(storage: Storage, tmp_path: Path) -> None:
    two_days = pd.concat([frame(4), frame(3, "2018-04-02").assign(TRANSACTION_ID=[10, 11, 12])])
    src = tmp_path / "two.parquet"
    two_days.to_parquet(src)
    two_days.to_csv(tmp_path / "two.csv", index=False)
    result = datasets.import_files(storage, [src])
    assert [(r.target, r.rows, r.status) for r in result] == [
        ("datasets/training/2018-04-01.parquet", 4, "written"),
        ("datasets/training/2018-04-02.parquet", 3, "written"),
    ]
    again = datasets.import_files(storage, [tmp_path / "two.csv"])
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    stored = datasets.read_parquet(storage, "datasets/training/2018-04-02.parquet")
    assert list(stored.dtypes.astype(str)) == list(COLUMNS.values())
    assert datasets.training_days(storage) == ["2018-04-01", "2018-04-02"]


def test_other_content_for_a_stored_day_needs_force(storage: Storage, tmp_path: Path) -> None:
    frame(4).to_parquet(tmp_path / "a.parquet")
    frame(4).assign(TX_AMOUNT=1.0).to_parquet(tmp_path / "b.parquet")
    datasets.import_files(storage, [tmp_path / "a.parquet"])
    with pytest.raises(DatasetError, match="--force"):
        datasets.import_files(storage, [tmp_path / "b.parquet"])
    assert [
        r.status for r in datasets.import_files(storage, [tmp_path / "b.parquet"], force=True)
    ] == ["replaced"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda df: df.drop(columns=["TX_AMOUNT"]), "missing required column.*TX_AMOUNT"),
        (lambda df: df.iloc[:0], "empty"),
        (lambda df: df.assign(TX_AMOUNT=[1.0, np.nan, 2.0, 3.0, 4.0]), "missing values.*TX_AMOUNT"),
        (lambda df: df.assign(TX_FRAUD=[0, 2, 0, 0, 0]), "TX_FRAUD must be 0 or 1"),
        (
            lambda df: df.assign(CUSTOMER_ID=["a", "b", "c", "d", "e"]),
            "CUSTOMER_ID must hold integers",
        ),
        (lambda df: df.assign(TRANSACTION_ID=[1, 1, 2, 3, 4]), "appears more than once"),
    ],
)
def test_bad_datasets_are_refused_naming_file_and_column(
    storage: Storage,
    tmp_path: Path,
    damage,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    src = tmp_path / "bad.parquet"
    damage(frame()).to_parquet(src)
    with pytest.raises(DatasetError, match=message) as info:
        datasets.import_files(storage, [src])
    assert str(src) in str(info.value)
    assert datasets.training_days(storage) == []


def test_corrupt_parquet_is_refused(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "corrupt.parquet"
    frame().to_parquet(src)
    src.write_bytes(src.read_bytes()[:40] + b"garbage" * 20)
    with pytest.raises(DatasetError, match=r"corrupt\.parquet: unreadable parquet"):
        datasets.import_files(storage, [src])


def test_earlier_files_stay_imported_when_a_later_one_is_bad(
    storage: Storage, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    frame().to_parquet(folder / "a.parquet")
    frame(day="2018-04-02").drop(columns=["TX_FRAUD"]).to_parquet(folder / "b.parquet")
    with pytest.raises(DatasetError, match=r"b\.parquet"):
        datasets.import_files(storage, [folder])
    assert datasets.training_days(storage) == ["2018-04-01"]


def test_tutorial_files_import_through_the_cli(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "root")
    refused = run_cli(capsys, "--root", root, "data", "import", str(TUTORIAL))
    assert refused.code == 1
    assert "refusing to load a pickle" in refused.err and "--trust-pickle" in refused.err
    assert "Traceback" not in refused.err
    ok = run_cli(capsys, "--root", root, "data", "import", "--trust-pickle", str(TUTORIAL))
    assert ok.code == 0, ok.err
    storage = Storage(root)
    assert datasets.training_days(storage) == [
        "2018-04-01",
        "2018-04-02",
        "2018-04-03",
        "2018-04-04",
    ]
    test = datasets.read_parquet(storage, "datasets/testing/test_dataset.parquet")
    assert len(test) == 9651 and test["TX_FRAUD"].sum() == 22


def test_same_second_transactions_keep_their_file_order_through_import(
    storage: Storage, tmp_path: Path
) -> None:
    """pandas' rule for ties: a card's same-second transactions stay in file order (a stable
    sort by time), whatever their ids; the stored day's features are those of the file."""
    from batchml.fraud.features.engineered import FEATURE_COLUMNS, compute_features
    from batchml.fraud.features.pipeline import FeatureSpec, compute_day

    tx = frame(6)
    second = pd.Timestamp("2018-04-01 12:00:00")
    tx.loc[[1, 2, 3], "TX_DATETIME"] = second  # one card, one second, ids 30 20 10 in the file
    tx.loc[[1, 2, 3], "CUSTOMER_ID"] = 7
    tx.loc[[1, 2, 3], "TRANSACTION_ID"] = [30, 20, 10]
    tx.loc[[1, 2, 3], "TX_AMOUNT"] = [1.0, 100.0, 10_000.0]
    tx = tx.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    src = tmp_path / "2018-04-01.csv"
    tx.to_csv(src, index=False)
    datasets.import_files(storage, [src])

    stored = datasets.read_parquet(storage, "datasets/training/2018-04-01.parquet")
    assert stored["TRANSACTION_ID"].tolist() == tx["TRANSACTION_ID"].tolist()
    [(_, part)] = list(datasets.split_days(tx.iloc[::-1]))  # reversed: ties reversed too
    at_second = part[part["TX_DATETIME"] == second]
    assert at_second["TRANSACTION_ID"].tolist() == [10, 20, 30]

    features = compute_day(storage, "2018-04-01", FeatureSpec()).set_index("TRANSACTION_ID")
    expected = compute_features(tx).set_index("TRANSACTION_ID")
    assert features.loc[[30, 20, 10], "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"].tolist() == [
        1.0, 50.5, 3367.0,
    ]  # fmt: skip
    pd.testing.assert_frame_equal(
        features[list(FEATURE_COLUMNS)], expected.loc[features.index, list(FEATURE_COLUMNS)]
    )

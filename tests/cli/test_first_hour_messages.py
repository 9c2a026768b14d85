"""What a new user is told: each bad input named for what it is, logs that say what runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batchml.cli import common
from batchml.fraud.data import datasets
from batchml.storage import Storage
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stored day of simulated transactions, 2018-04-01."""
    root = tmp_path_factory.mktemp("gen")
    from batchml.cli.data import generate_days
    from batchml.fraud.data.simulate import SimulationConfig

    config = SimulationConfig(n_customers=50, n_terminals=100, n_days=2, seed=0)
    generate_days(Storage(root), config)
    return root / "datasets" / "training" / "2018-04-01.parquet"


def _root_with_days(tmp_path: Path, day_file: Path) -> tuple[str, ...]:
    training = tmp_path / "datasets" / "training"
    training.mkdir(parents=True)
    shutil.copy(day_file, training / "2018-04-01.parquet")
    return ("--root", str(tmp_path))


@pytest.mark.parametrize("bad", ["2018-13-45", "yesterday"])
def test_a_bad_start_day_is_named_not_taken_for_missing_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path, bad: str
) -> None:
    cli = _root_with_days(tmp_path, day_file)
    result = run_cli(capsys, *cli, "queue", "push", "--start", bad)
    assert result.code == 2, result.err
    assert f"'{bad}' is not a day" in result.err and "--start" in result.err
    assert "data generate" not in result.err


def test_start_after_end_and_an_empty_range_say_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path
) -> None:
    cli = _root_with_days(tmp_path, day_file)
    span = ("--start", "2018-04-03", "--end", "2018-04-01")
    inverted = run_cli(capsys, *cli, "queue", "push", *span)
    assert inverted.code == 78
    assert "--start 2018-04-03 is after --end 2018-04-01" in inverted.err
    empty = run_cli(capsys, *cli, "queue", "push", "--start", "2018-05-01")
    assert empty.code == 78
    assert "no stored training day matches --start 2018-05-01" in empty.err
    assert "the 1 stored day(s) are 2018-04-01 … 2018-04-01" in empty.err
    assert "data generate" not in empty.err
    nothing = run_cli(capsys, "--root", str(tmp_path / "none"), "queue", "push")
    assert nothing.code == 78 and "run `batchml data generate`" in nothing.err


def test_a_file_named_for_another_day_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path
) -> None:
    misnamed = tmp_path / "2018-05-01.parquet"
    shutil.copy(day_file, misnamed)
    root = tmp_path / "root"
    result = run_cli(capsys, "--root", str(root), "data", "import", str(misnamed))
    assert result.code == 1
    assert "named for 2018-05-01 but its transactions are of 2018-04-01" in result.err
    assert not (root / "datasets" / "training" / "2018-04-01.parquet").exists()


def test_negative_and_absurd_amounts_are_a_warning_with_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path
) -> None:
    storage = Storage(day_file.parent.parent.parent)
    frame = datasets.read_parquet(storage, "datasets/training/2018-04-01.parquet")
    frame.loc[:2, "TX_AMOUNT"] = -5.0
    frame.loc[3, "TX_AMOUNT"] = 5e9
    source = tmp_path / "refunds.parquet"
    source.write_bytes(datasets.frame_to_parquet_bytes(frame))
    result = run_cli(capsys, "--root", str(tmp_path / "root"), "data", "import", str(source))
    assert result.code == 0, result.err
    assert (
        f"3 of {len(frame)} transaction(s) have a negative TX_AMOUNT and 1 one above 1,000,000"
        in result.err
    )


def test_worker_logs_name_the_task_the_dataset_and_the_item(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path
) -> None:
    cli = _root_with_days(tmp_path, day_file)
    assert run_cli(capsys, *cli, "queue", "push", "--model", "sgd").code == 0
    added = run_cli(capsys, *cli, "queue", "add", "noop", "--id", "i-3e6c")
    assert added.code == 0, added.err
    worker = run_cli(capsys, *cli, "worker", "--poll", "0.05")
    assert worker.code == 0, worker.err
    assert "Processing item: i-3e6c (noop)" in worker.err
    assert "Processing dataset: i-3e6c" not in worker.err
    assert "Processing dataset: 2018-04-01 (fraud.features, item features:" in worker.err
    assert (
        "Processing dataset: 2018-04-01 (fraud.train, item train:default:2018-04-01)" in worker.err
    )


def test_evaluate_on_a_stored_test_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, day_file: Path
) -> None:
    cli = _root_with_days(tmp_path, day_file)
    testing = tmp_path / "datasets" / "testing"
    testing.mkdir(parents=True)
    shutil.copy(day_file.with_name("2018-04-02.parquet"), testing / "holdout.parquet")
    assert run_cli(capsys, *cli, "queue", "push", "--model", "sgd").code == 0
    assert run_cli(capsys, *cli, "worker", "--poll", "0.05").code == 0
    week = run_cli(capsys, *cli, "fraud", "evaluate")
    assert week.code == 1 and "--test datasets/testing/NAME.parquet" in week.err
    assert "queue push --end" in week.err
    result = run_cli(
        capsys, *cli, "fraud", "evaluate", "--test", "datasets/testing/holdout.parquet", "--json"
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["test_files"] == ["datasets/testing/holdout.parquet"]
    assert data["test_days"] == ["2018-04-02"] and data["metrics"]["rows"] > 0
    trained = run_cli(
        capsys, *cli, "fraud", "evaluate", "--test", "datasets/training/2018-04-01.parquet"
    )
    assert trained.code == 78 and "holds 1 day(s) the model was trained on" in trained.err


def test_the_console_does_not_colour_the_digits_of_a_date() -> None:
    for console in (common.console, common.err_console):
        assert console.render_str("2018-04-01 v12 0.7184").spans == []

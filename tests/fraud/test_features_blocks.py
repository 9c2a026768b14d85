"""Features of many days in one pass: the same bytes as one day at a time, in blocks of items."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.data.schema import normalize
from batchml.fraud.features import pipeline
from batchml.fraud.features.engineered import compute_features
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.queue.base import State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.storage import Storage
from tests.fraud.test_features import DAY, MONDAY, SECOND, random_frame
from tests.support.fraud_data import small_root

SPEC = FeatureSpec()


def test_a_rows_features_do_not_depend_on_the_other_rows_bit_for_bit() -> None:
    # Given a card's transactions, alone and beside a big spender whose amounts are ~1e8
    # (which, with a scale or a running float sum set by all rows, changes the rounding)
    tx = random_frame(11, 500, customers=4, terminals=3, days=40)
    big = random_frame(12, 3000, customers=1, terminals=1, days=40)
    big["TRANSACTION_ID"] += 10_000
    big["CUSTOMER_ID"] = big["TERMINAL_ID"] = 99
    big["TX_AMOUNT"] = big["TX_AMOUNT"] * 987_654.321
    alone = compute_features(tx)
    both = pd.concat([big, tx], ignore_index=True).sort_values("TX_DATETIME", kind="stable")
    beside = compute_features(both).set_index("TRANSACTION_ID").loc[tx["TRANSACTION_ID"]]
    # Then every feature of the card's rows is the same float, to the last bit
    for name in alone.columns[1:]:
        np.testing.assert_array_equal(alone[name].to_numpy(), beside[name].to_numpy(), name)


def test_negative_amounts_are_summed_exactly_too() -> None:
    tx = random_frame(13, 300, customers=3, terminals=3, days=20)
    tx["TX_AMOUNT"] = tx["TX_AMOUNT"] - 100.0
    from tests.fraud.test_features import assert_same_features
    from tests.support.reference_features import reference_features

    assert_same_features(compute_features(tx), reference_features(tx))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("blocks")
    small_root(base / "cache", base / "root")
    return base / "root"


def single_day_bytes(storage: Storage, day: str) -> bytes:
    return pipeline.table_to_bytes(pipeline.compute_day(storage, day, SPEC))


def test_compute_days_gives_each_day_the_bytes_of_computing_it_alone(root: Path) -> None:
    storage = Storage(root)
    days = datasets.training_days(storage)
    wanted = [*days[5:20], *days[30:33]]  # two segments, one of them with its own look-back
    computed = pipeline.compute_days(storage, wanted, SPEC)
    assert sorted(computed.tables) == wanted and not computed.invalid
    for day in wanted:
        assert pipeline.arrow_to_bytes(computed.tables[day]) == single_day_bytes(storage, day)


def test_an_invalid_day_is_reported_and_left_out_of_the_others_windows(tmp_path: Path) -> None:
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)
    storage = Storage(root)
    (root / datasets.day_path(days[8])).write_bytes(b"PAR1 not parquet")
    (root / datasets.day_path(days[3])).write_bytes(b"PAR1 not parquet")  # a look-back day
    computed = pipeline.compute_days(storage, days[6:12], SPEC)
    assert list(computed.invalid) == [days[8]]
    assert "corrupt or unreadable Parquet" in str(computed.invalid[days[8]])
    for day in (*days[6:8], *days[9:12]):
        assert pipeline.arrow_to_bytes(computed.tables[day]) == single_day_bytes(storage, day)


def test_a_transaction_id_repeated_across_days_is_handled_as_one_day_does(tmp_path: Path) -> None:
    # Given a day whose first transaction has the id of a transaction three days earlier
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)
    storage = Storage(root)
    earlier = datasets.read_parquet(storage, datasets.day_path(days[4]))
    later = datasets.read_parquet(storage, datasets.day_path(days[7]))
    later.loc[0, "TRANSACTION_ID"] = earlier["TRANSACTION_ID"].iloc[0]
    datasets.write_day(storage, days[7], later)
    # Then every day still gets the bytes of its own computation (which drops that history row)
    computed = pipeline.compute_days(storage, days[5:10], SPEC)
    for day in days[5:10]:
        assert pipeline.arrow_to_bytes(computed.tables[day]) == single_day_bytes(storage, day)


def test_equal_timestamps_keep_their_stored_order_in_every_block(tmp_path: Path) -> None:
    # Given stored days full of same-second transactions of one card, ids not in row order
    storage = Storage(tmp_path)
    tx = random_frame(21, 6000, customers=3, terminals=4, days=45, resolution=600 * SECOND)
    tx = tx.sort_values("TX_DATETIME", kind="stable")
    seconds = (tx["TX_DATETIME"] - pd.Timestamp(MONDAY)) // pd.Timedelta(SECOND)
    tx = tx.assign(
        TX_TIME_SECONDS=seconds, TX_TIME_DAYS=seconds // 86_400, TX_FRAUD_SCENARIO=tx["TX_FRAUD"]
    )
    day_of = (tx["TX_DATETIME"] - pd.Timestamp(MONDAY)) // pd.Timedelta(DAY)
    days = []
    for offset, part in tx.groupby(day_of):
        day = (pd.Timestamp(MONDAY) + pd.Timedelta(days=int(offset))).date().isoformat()
        datasets.write_day(storage, day, normalize(part.reset_index(drop=True), day))
        days.append(day)
    # Then one pass over all days gives each day the bytes of its single-day computation
    computed = pipeline.compute_days(storage, days, SPEC)
    for day in days[::4]:
        assert pipeline.arrow_to_bytes(computed.tables[day]) == single_day_bytes(storage, day)


# -- the queue: one features item per block of days ---------------------------------------------


def test_plan_queues_one_features_item_per_block_and_trains_depend_on_theirs(
    tmp_path: Path,
) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    days = [f"2018-04-{n:02d}" for n in range(1, 21)]
    specs = plan.training_items(queue, days[:10], run="r", block_days=7)
    features = [s for s in specs if s.payload["task"] == "fraud.features"]
    assert [s.id for s in features] == [
        f"features:{SPEC.id}:2018-04-01..2018-04-07",
        f"features:{SPEC.id}:2018-04-08..2018-04-10",
    ]
    assert features[0].payload["days"] == days[:7]
    trains = {s.payload["dataset"]: s for s in specs if s.payload["task"] == "fraud.train"}
    assert trains["2018-04-07"].depends_on == (features[0].id, plan.train_id("r", "2018-04-06"))
    assert trains["2018-04-08"].depends_on == (features[1].id, plan.train_id("r", "2018-04-07"))
    queue.push(specs)
    # pushing the same days again adds nothing; later days get blocks of their own
    again = plan.training_items(queue, days[:10], run="r")
    assert [s for s in again if s.payload["task"] == "fraud.features"] == []
    assert all(o.value == "exists" for o in queue.push(again))
    later = plan.training_items(queue, days, run="r")
    assert [s.id for s in later if s.payload["task"] == "fraud.features"] == [
        f"features:{SPEC.id}:2018-04-11..2018-04-17",
        f"features:{SPEC.id}:2018-04-18..2018-04-20",
    ]


def test_an_old_queue_with_one_features_item_per_day_keeps_working(tmp_path: Path) -> None:
    # Given a queue pushed by the old code: features:<spec>:<day> items, one per day
    queue = SqliteQueue(tmp_path / "q.db")
    days = [f"2018-04-{n:02d}" for n in range(1, 9)]
    queue.push(plan.training_items(queue, days[:4], run="r", block_days=1))
    assert plan.features_id(SPEC, days[0]) in {i.id for i in queue.items()}
    # When the next days are pushed, then they come in a block; the old items stay as they are
    specs = plan.training_items(queue, days, run="r")
    assert [s.id for s in specs if s.payload["task"] == "fraud.features"] == [
        f"features:{SPEC.id}:2018-04-05..2018-04-08"
    ]
    queue.push(specs)
    again = plan.training_items(queue, days, run="r")
    assert all(o.value == "exists" for o in queue.push(again))
    trains = {i.payload["dataset"]: i for i in queue.items() if i.id.startswith("train:")}
    assert trains[days[3]].depends_on[0] == plan.features_id(SPEC, days[3])


#: a short lease, so the victim's block is reclaimed in seconds, not the default minute
LEASE_TTL = "3"


def worker(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "batchml", "--root", str(root), "worker", "--poll", "0.05"]
    command += ["--lease-ttl", LEASE_TTL]
    return subprocess.Popen([*command, *extra], stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_block_items_killed_and_rerun_publish_the_single_day_bytes(tmp_path: Path) -> None:
    # Given a root whose days are queued as features blocks (and an old one-day item)
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)
    storage = Storage(root)
    queue = SqliteQueue(root / "queue.db")
    old_style = plan.features_item(SPEC, days[0])
    queue.push([old_style])
    blocks = [plan.features_item(SPEC, *b) for b in plan.feature_blocks(days[1:], 9)]
    queue.push(blocks)
    # When two workers run them and one is SIGKILLed in the middle of a block, once the first
    # block is committed
    victim, other = worker(root, "--worker-id", "victim"), worker(root)

    def victim_mid_block() -> bool:
        items = queue.items()
        return any(i.state == State.DONE for i in items) and any(
            i.state == State.LEASED and i.worker == "victim" for i in items
        )

    while not victim_mid_block():
        assert victim.poll() is None or other.poll() is None
        time.sleep(0.01)
    victim.kill()
    victim.wait()
    assert other.wait(timeout=200) == 0
    assert worker(root).wait(timeout=200) == 0  # drained: exits at once
    # Then every day's cache holds exactly the bytes of its single-day computation
    assert all(i.state == State.DONE for i in queue.items())
    lost = [h for h in queue.history() if h.outcome == "expired" and h.worker == "victim"]
    assert lost, "the victim's lease never expired: nothing was reclaimed"
    for day in days:
        cached = (root / SPEC.cache_path(day)).read_bytes()
        assert cached == single_day_bytes(storage, day), day


def test_a_block_payload_must_list_sorted_days_starting_with_its_dataset(tmp_path: Path) -> None:
    from batchml.errors import PayloadError
    from batchml.fraud.tasks import check_features

    storage = Storage(tmp_path)
    good = plan.features_item(SPEC, "2018-04-01", "2018-04-02").payload
    check_features(good, storage)
    for days in (["2018-04-02", "2018-04-01"], ["2018-04-01", "x"], "2018-04-01", []):
        with pytest.raises(PayloadError, match="'days'"):
            check_features({**good, "days": days}, storage)


def test_fraud_features_command_computes_all_days_once_and_fills_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from batchml import exitcodes
    from tests.support.cli import run_cli

    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)
    storage = Storage(root)
    out = tmp_path / "out.parquet"
    wanted = [days[12], *days[3:9]]  # in the order asked
    done = run_cli(capsys, "--root", str(root), "fraud", "features", *wanted, "--out", str(out))
    assert done.code == 0, done.err
    expected = pd.concat([pipeline.compute_day(storage, d, SPEC) for d in wanted])
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)
    for day in wanted:
        assert (root / SPEC.cache_path(day)).read_bytes() == single_day_bytes(storage, day)
    # a day that cannot be read is refused, naming it
    (root / datasets.day_path(days[5])).write_bytes(b"PAR1 not parquet")
    bad = run_cli(capsys, "--root", str(root), "fraud", "features", *days[4:7], "--out", str(out))
    assert bad.code == exitcodes.CONFIG and days[5] in bad.err and "corrupt" in bad.err

"""The run's lineage only grows forward, with the settings of its first push (fraud/plan.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchml.errors import ConfigError
from batchml.fraud import plan
from batchml.fraud.models.lineage import ModelConfig
from batchml.queue.base import PushOutcome, QueueOptions, RetryPolicy, State, WorkQueue
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.chain_driver import TTL, drain, lineage_days
from tests.support.clock import FakeClock

DAYS = [f"2018-04-0{n}" for n in range(1, 6)]
SGD = ModelConfig(kind="sgd")


@pytest.fixture
def queue(tmp_path: Path) -> WorkQueue:
    retry = RetryPolicy(max_attempts=1)
    return SqliteQueue(tmp_path / "q.db", QueueOptions(retry=retry, clock=FakeClock()))


def push(queue: WorkQueue, days: list[str], **kw: object) -> list[PushOutcome]:
    force = bool(kw.get("force", False))
    kw.setdefault("block_days", 1)  # one features item per day: these tests count items
    specs = plan.training_items(queue, days, run="default", **kw)  # type: ignore[arg-type]
    return queue.push(specs, force=force)


def test_an_earlier_day_is_refused_naming_the_day_the_last_day_and_the_options(
    queue: WorkQueue,
) -> None:
    push(queue, DAYS[1:])
    with pytest.raises(ConfigError) as refused:
        push(queue, DAYS)
    message = str(refused.value)
    for needle in ("2018-04-01", "last day 2018-04-05", "--run", "--force"):
        assert needle in message
    assert len(queue.items()) == 8  # nothing was pushed


def test_the_same_days_again_are_a_no_op(queue: WorkQueue) -> None:
    push(queue, DAYS)
    assert set(push(queue, DAYS)) == {PushOutcome.EXISTS}
    assert set(push(queue, DAYS[2:4])) == {PushOutcome.EXISTS}
    assert set(push(queue, DAYS, model=ModelConfig())) == {PushOutcome.EXISTS}


def test_later_days_are_appended_to_the_chain(queue: WorkQueue) -> None:
    push(queue, DAYS[:2])
    drain(queue)
    push(queue, DAYS[:4])
    assert queue.get(plan.train_id("default", DAYS[2])).depends_on[-1] == plan.train_id(
        "default", DAYS[1]
    )
    drain(queue)
    assert lineage_days(queue) == DAYS[:4]


def test_force_rebuilds_the_chain_from_an_earlier_day_in_date_order(queue: WorkQueue) -> None:
    """The issue's case: --start 04-02, then --start 04-01: with --force, 04-01 comes first."""
    push(queue, DAYS[1:])
    outcomes = push(queue, DAYS[:1], force=True)
    assert PushOutcome.RESET in outcomes
    second = queue.get(plan.train_id("default", DAYS[1]))
    assert plan.train_id("default", DAYS[0]) in second.depends_on
    drain(queue)
    assert lineage_days(queue) == DAYS


def test_force_resumes_a_chain_after_the_head_without_rewinding_it(queue: WorkQueue) -> None:
    push(queue, DAYS[:2])
    drain(queue)
    push(queue, DAYS[2:])
    push(queue, DAYS[2:3], force=True)  # head at 04-02: re-queue 04-03 … 04-05, in order
    drain(queue)
    assert lineage_days(queue) == DAYS


def test_force_behind_the_head_is_refused_pointing_to_lineage_reset(queue: WorkQueue) -> None:
    push(queue, DAYS)
    drain(queue)
    with pytest.raises(ConfigError, match="batchml lineage reset") as refused:
        push(queue, DAYS[2:3], force=True)
    assert "trained through 2018-04-05" in str(refused.value)
    assert queue.counts()[State.DONE] == 10  # nothing reset


def test_force_while_a_day_of_the_range_is_trained_is_refused(queue: WorkQueue) -> None:
    push(queue, DAYS[:2])
    features = queue.lease("w", TTL)
    assert features and features.item.id.startswith("features:")
    queue.complete(features.item.id, features.token)
    train = queue.lease("w", TTL)
    assert train and train.item.id == plan.train_id("default", DAYS[0])
    with pytest.raises(ConfigError, match="being trained by worker w"):
        push(queue, DAYS[:2], force=True)


def test_another_model_for_a_queued_run_is_refused_naming_both(queue: WorkQueue) -> None:
    push(queue, DAYS[:2])
    with pytest.raises(ConfigError) as refused:
        push(queue, DAYS, model=SGD)
    message = str(refused.value)
    assert "run 'default' was queued with model lgbm {" in message
    assert "this push asks for model sgd {" in message and "another --run" in message
    with pytest.raises(ConfigError, match="another --run"):
        push(queue, DAYS[:2], model=SGD)  # already queued days: no longer silently ignored
    assert len(queue.items()) == 4


def test_without_a_model_a_later_push_keeps_the_runs_own(queue: WorkQueue) -> None:
    push(queue, DAYS[:2], model=SGD)
    push(queue, DAYS)
    models = {i.payload["model"]["kind"] for i in queue.items() if i.id.startswith("train:")}
    assert models == {"sgd"}


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (ModelConfig(kind="forest"), "unknown model kind 'forest'"),
        (ModelConfig(kind="sgd", params=(("depth", 3),)), "unknown parameter(s) depth"),
        (ModelConfig(kind="sgd", params=(("alpha", "lots"),)), "is invalid"),
    ],
)
def test_an_invalid_model_is_refused_at_push(
    queue: WorkQueue, model: ModelConfig, needle: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        push(queue, DAYS, model=model)
    assert needle in str(refused.value)
    assert queue.items() == []

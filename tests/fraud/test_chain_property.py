"""Property: whatever happens to a run's items, its lineage is a prefix of its days in date order.

Random sequences of pushes (later days, earlier ones, forced ones), leases, completions,
failures (to death), lease expiries and requeues, driven through the WorkQueue API with a fake
clock (no task, no process: tests/support/chain_driver.py). After every step:

- the lineage (completed train items, in order) is a prefix of the accepted days, sorted;
- no item is ready or leased while a dependency is not done; a waiting item has no dead or
  blocked dependency; a blocked one has one;
- a push the rules refuse (fraud/plan.py) is refused, and one they allow is accepted;
- (Redis) the KEDA list has one element per ready item.

At the end every dead item is requeued and everything drains: the lineage is then exactly the
accepted days in date order.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchml.errors import ConfigError, LeaseLost
from batchml.fraud import plan
from batchml.queue.base import Lease, QueueOptions, RetryPolicy, State, WorkQueue
from batchml.queue.redis.keys import QueueKeys
from batchml.queue.redis.queue import RedisQueue
from batchml.queue.sqlite.queue import SqliteQueue
from tests.conftest import with_queue_name
from tests.support.chain_driver import TTL, complete, drain, lineage_days
from tests.support.clock import FakeClock

DAYS = [f"2018-04-0{n}" for n in range(1, 8)]
RUN = "default"

push_op = st.tuples(
    st.just("push"), st.integers(0, len(DAYS) - 1), st.integers(0, 2), st.booleans()
)
ops = st.tuples(
    push_op,
    st.lists(
        st.one_of(
            push_op,
            st.tuples(st.just("work"), st.integers(1, 4)),  # lease and complete that many
            st.tuples(st.just("lease")),  # lease one and hold it
            st.tuples(st.just("complete"), st.integers(0, 3)),  # one of the held leases
            st.tuples(st.just("fail"), st.integers(0, 3)),
            st.tuples(st.just("fail_next")),  # lease the next item and fail it
            st.tuples(st.just("kill_next")),  # ... until it is dead
            st.tuples(st.just("expire")),  # every held lease expires
            st.tuples(st.just("requeue")),
        ),
        min_size=4,
        max_size=30,
    ),
).map(lambda first_and_rest: [first_and_rest[0], *first_and_rest[1]])


class Model:
    """The days the run accepted, and the leases the test holds."""

    def __init__(self, queue: WorkQueue, clock: FakeClock) -> None:
        self.queue, self.clock = queue, clock
        self.days: set[str] = set()
        self.held: list[Lease] = []
        self.keda: Any = None
        if isinstance(queue, RedisQueue):
            admin = redis.Redis.from_url(queue.address.url.split("?")[0])
            self.keda = lambda: admin.llen(QueueKeys(queue.address.name).ready_list)

    def expected_refusal(self, days: list[str], force: bool) -> bool:
        head = self.queue.lineage_head(RUN)
        queued = {i.payload["dataset"]: i for i in self.queue.items() if i.id.startswith("train:")}
        last = max([*queued, *([head.dataset] if head.dataset else [])], default=None)
        if not force:
            return any(d not in queued and last is not None and d <= last for d in days)
        if head.dataset is not None and head.dataset >= days[0]:
            return True
        return any(d >= days[0] and i.state == State.LEASED for d, i in queued.items())

    def push(self, first: int, extra: int, force: bool) -> None:
        days = DAYS[first : first + extra + 1]
        refused = self.expected_refusal(days, force)
        try:
            specs = plan.training_items(self.queue, days, run=RUN, force=force)
            self.queue.push(specs, force=force)
        except ConfigError:
            assert refused, f"push {days} force={force} was refused"
            return
        assert not refused, f"push {days} force={force} was accepted"
        self.days.update(days)

    def work(self, n: int) -> None:
        for _ in range(n):
            if (lease := self.queue.lease("w", TTL)) is None:
                break
            complete(self.queue, lease)

    def fail_next(self, until_dead: bool) -> None:
        while lease := self.queue.lease("w", TTL):
            state = self.queue.fail(lease.item.id, lease.token, f"{lease.item.id} broke")
            if not until_dead or state == State.DEAD:
                break

    def lease(self) -> None:
        if lease := self.queue.lease("w", TTL):
            self.held.append(lease)

    def end_held(self, k: int, ok: bool) -> None:
        if not self.held:
            return
        lease = self.held.pop(k % len(self.held))
        try:
            if ok:
                complete(self.queue, lease)
            else:
                self.queue.fail(lease.item.id, lease.token, "boom")
        except LeaseLost:
            pass  # expired and taken back

    def step(self, op: tuple[Any, ...]) -> None:
        actions: dict[str, Any] = {
            "push": self.push,
            "work": self.work,
            "fail_next": lambda: self.fail_next(False),
            "kill_next": lambda: self.fail_next(True),
            "lease": self.lease,
            "complete": lambda k: self.end_held(k, True),
            "fail": lambda k: self.end_held(k, False),
            "expire": lambda: self.clock.advance(TTL + 1),
            "requeue": self.queue.requeue_dead,
        }
        actions[op[0]](*op[1:])

    def check(self) -> None:
        lineage = lineage_days(self.queue, RUN)
        assert lineage == sorted(self.days)[: len(lineage)], (lineage, sorted(self.days))
        items = {i.id: i for i in self.queue.items()}
        for item in items.values():
            states = [items[d].state for d in item.depends_on]
            if item.state in (State.READY, State.LEASED):
                assert all(s == State.DONE for s in states), (item.id, item.state, states)
            elif item.state == State.WAITING:
                assert any(s != State.DONE for s in states), item.id
                assert not any(s in (State.DEAD, State.BLOCKED) for s in states), item.id
            elif item.state == State.BLOCKED:
                assert any(s in (State.DEAD, State.BLOCKED) for s in states), item.id
                assert (item.last_error or "").startswith("blocked: dependency ")
        if self.keda is not None:
            assert self.keda() == self.queue.counts()[State.READY]

    def finish(self) -> None:
        """Requeue whatever died and drain: the whole run trains, in date order."""
        self.clock.advance(TTL + 1)
        for _ in range(10):
            drain(self.queue)
            if not self.queue.requeue_dead():
                break
        self.check()
        assert self.queue.counts()[State.BLOCKED] == 0
        assert lineage_days(self.queue, RUN) == sorted(self.days)


def run_sequence(queue: WorkQueue, clock: FakeClock, sequence: list[tuple[Any, ...]]) -> None:
    model = Model(queue, clock)
    for op in sequence:
        model.step(op)
        model.check()
    model.finish()


def _options(clock: FakeClock) -> QueueOptions:
    return QueueOptions(retry=RetryPolicy(max_attempts=2, backoff_base=0.0), clock=clock)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=ops)
def test_sqlite_lineage_is_always_a_prefix_of_the_days_in_order(
    sequence: list[tuple[Any, ...]],
) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as folder:
        queue = SqliteQueue(Path(folder) / "q.db", _options(clock))
        try:
            run_sequence(queue, clock, sequence)
        finally:
            queue.close()


@pytest.mark.redis
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=ops)
def test_redis_lineage_is_always_a_prefix_of_the_days_in_order(
    redis_server: str, sequence: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock()
    url = with_queue_name(redis_server, f"p-{uuid.uuid4().hex[:12]}")
    queue = RedisQueue.from_url(url, _options(clock))
    try:
        run_sequence(queue, clock, sequence)
    finally:
        queue.purge()
        queue.close()

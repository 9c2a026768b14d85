"""The queue contract of docs/design.md, as one suite every backend subclasses unchanged.

A backend's test module does::

    class TestMyQueue(QueueContract):
        def make_queue(self, tmp_path, options): ...

Time is a FakeClock: expiry and backoff are tested by moving it, never by sleeping.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batchml.errors import LeaseLost, LineageConflict, QueueError, UnknownItem
from batchml.queue import open_queue
from batchml.queue.base import (
    WORKER_RETENTION,
    ItemSpec,
    LineageHead,
    LineageStep,
    PushOutcome,
    QueueOptions,
    RetryPolicy,
    State,
    WorkerInfo,
    WorkQueue,
)
from batchml.storage import Publication
from tests.support.clock import FakeClock
from tests.support.queue_batch_contract import BatchContract

TTL = 30.0


def spec(n: int | str, **kw: Any) -> ItemSpec:
    return ItemSpec(payload={"n": n}, id=f"item-{n}", **kw)


def _lease_all(url: str, worker: str, out: Any) -> None:
    """Child process: lease and complete until nothing is left; report what it got."""
    queue = open_queue(url)
    got = []
    while (lease := queue.lease(worker, ttl=60)) is not None:
        queue.complete(lease.item.id, lease.token, {"by": worker})
        got.append(lease.item.id)
    queue.close()
    out.put(got)


class QueueContract(BatchContract):
    """Subclass and implement make_queue (the batched half: BatchContract)."""

    def make_queue(self, tmp_path: Path, options: QueueOptions) -> WorkQueue:
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def queue(self, tmp_path: Path, clock: FakeClock) -> Any:
        retry = RetryPolicy(max_attempts=3, backoff_base=10.0, backoff_factor=2.0)
        q = self.make_queue(tmp_path, QueueOptions(retry=retry, clock=clock))
        yield q
        q.close()

    # -- push and order ----------------------------------------------------------------------

    def test_given_items_pushed_when_leased_then_fifo_order(self, queue: WorkQueue) -> None:
        queue.push([spec(i) for i in range(5)])
        got = [queue.lease("w", TTL) for _ in range(5)]
        assert [lease.item.id for lease in got if lease] == [f"item-{i}" for i in range(5)]
        assert queue.lease("w", TTL) is None

    def test_given_priorities_when_leased_then_highest_first_then_fifo(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec(1), spec(2, priority=5), spec(3), spec(4, priority=5)])
        order = [queue.lease("w", TTL).item.id for _ in range(4)]  # type: ignore[union-attr]
        assert order == ["item-2", "item-4", "item-1", "item-3"]

    def test_given_same_payload_twice_when_pushed_then_noop(self, queue: WorkQueue) -> None:
        a = ItemSpec(payload={"dataset": "2018-04-01"})
        assert queue.push([a]) == [PushOutcome.ADDED]
        assert queue.push([ItemSpec(payload={"dataset": "2018-04-01"})]) == [PushOutcome.EXISTS]
        assert queue.counts()[State.READY] == 1
        assert queue.get(a.item_id).payload == {"dataset": "2018-04-01"}

    def test_given_done_item_when_pushed_with_force_then_ready_again(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete(lease.item.id, lease.token, {"ok": 1})
        assert queue.push([spec(1)]) == [PushOutcome.EXISTS]
        assert queue.push([spec(1)], force=True) == [PushOutcome.RESET]
        again = queue.lease("w", TTL)
        assert again and again.item.id == "item-1" and again.item.attempts == 1
        assert again.token > lease.token

    def test_given_queued_item_when_pushed_with_force_then_reset_in_place(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec(1)])
        assert queue.push([spec(1)], force=True) == [PushOutcome.RESET]
        assert queue.counts()[State.READY] == 1
        assert len(queue.items()) == 1

    def test_given_leased_item_when_pushed_with_force_then_left_alone(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w", TTL)
        assert lease
        assert queue.push([spec(1)], force=True) == [PushOutcome.EXISTS]
        assert queue.get("item-1").state == State.LEASED
        queue.complete(lease.item.id, lease.token)

    def test_payload_round_trips_as_json(self, queue: WorkQueue) -> None:
        payload = {
            "path": "datasets/training/2018-04-01.parquet",
            "nested": [1, 2.5, None],
            "é": "ü",
        }
        queue.push([ItemSpec(payload=payload, id="x")])
        lease = queue.lease("w", TTL)
        assert lease and lease.item.payload == payload

    # -- dependencies ------------------------------------------------------------------------

    def test_given_unknown_dependency_when_pushed_then_refused(self, queue: WorkQueue) -> None:
        with pytest.raises(QueueError, match="nope"):
            queue.push([spec(1, depends_on=("nope",))])
        assert queue.counts()[State.READY] == 0

    def test_given_dependency_when_it_completes_then_dependent_becomes_ready(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec("a"), spec("b"), spec("c", depends_on=("item-a", "item-b"))])
        assert queue.get("item-c").state == State.WAITING
        first = queue.lease("w", TTL)
        assert first and first.item.id == "item-a"
        queue.complete(first.item.id, first.token)
        assert queue.get("item-c").state == State.WAITING
        second = queue.lease("w", TTL)
        assert second and second.item.id == "item-b"
        queue.complete(second.item.id, second.token)
        assert queue.get("item-c").state == State.READY
        third = queue.lease("w", TTL)
        assert third and third.item.id == "item-c"

    def test_a_dependency_named_twice_counts_once(self, queue: WorkQueue) -> None:
        queue.push([spec("a"), spec("b", depends_on=("item-a", "item-a"))])
        lease = queue.lease("w", TTL)
        assert lease and lease.item.id == "item-a"
        queue.complete(lease.item.id, lease.token)
        assert queue.get("item-b").state == State.READY
        assert queue.get("item-b").depends_on == ("item-a",)

    def test_given_dead_dependency_then_dependents_blocked_transitively(
        self, queue: WorkQueue
    ) -> None:
        queue.push(
            [
                spec("a", max_attempts=1),
                spec("b", depends_on=("item-a",)),
                spec("c", depends_on=("item-b",)),
                spec("free"),
            ]
        )
        lease = queue.lease("w", TTL)
        assert lease and lease.item.id == "item-a"
        assert queue.fail(lease.item.id, lease.token, "boom") == State.DEAD
        for blocked in ("item-b", "item-c"):
            item = queue.get(blocked)
            assert item.state == State.BLOCKED
            assert item.last_error == "blocked: dependency item-a is dead: boom"
        counts = queue.counts()
        assert counts[State.BLOCKED] == 2 and counts[State.DEAD] == 1
        nxt = queue.lease("w", TTL)
        assert nxt and nxt.item.id == "item-free"
        queue.complete(nxt.item.id, nxt.token)
        assert queue.lease("w", TTL) is None
        assert queue.drained()
        assert {i.id for i in queue.items([State.BLOCKED])} == {"item-b", "item-c"}

    def test_requeue_dead_unblocks_the_chain_in_order(self, queue: WorkQueue) -> None:
        queue.push(
            [
                spec("a", max_attempts=1),
                spec("b", depends_on=("item-a",)),
                spec("c", depends_on=("item-b",)),
            ]
        )
        lease = queue.lease("w", TTL)
        assert lease
        queue.fail(lease.item.id, lease.token, "boom")
        assert queue.requeue_dead() == 1
        assert queue.get("item-a").state == State.READY
        for waiting in ("item-b", "item-c"):
            item = queue.get(waiting)
            assert item.state == State.WAITING and item.last_error is None
        order = []
        while (lease := queue.lease("w", TTL)) is not None:
            order.append(lease.item.id)
            queue.complete(lease.item.id, lease.token)
        assert order == ["item-a", "item-b", "item-c"]
        assert queue.counts()[State.BLOCKED] == 0

    def test_an_item_blocked_by_two_dead_stays_blocked_until_both_are_requeued(
        self, queue: WorkQueue
    ) -> None:
        queue.push(
            [
                spec("a", max_attempts=1),
                spec("b", max_attempts=1),
                spec("c", depends_on=("item-a", "item-b")),
            ]
        )
        for _ in range(2):
            lease = queue.lease("w", TTL)
            assert lease
            queue.fail(lease.item.id, lease.token, f"{lease.item.id} broke")
        assert queue.get("item-c").state == State.BLOCKED
        assert queue.requeue_dead(["item-a"]) == 1
        blocked = queue.get("item-c")
        assert blocked.state == State.BLOCKED
        assert blocked.last_error == "blocked: dependency item-b is dead: item-b broke"
        assert queue.requeue_dead(["item-b"]) == 1
        assert queue.get("item-c").state == State.WAITING

    def test_given_lease_lost_too_often_then_dependents_blocked(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec("a", max_attempts=1), spec("b", depends_on=("item-a",))])
        assert queue.lease("w", TTL)
        clock.advance(TTL + 1)
        assert queue.lease("w2", TTL) is None  # reclaim: a is dead, b blocked, nothing to lease
        assert queue.get("item-a").state == State.DEAD
        b = queue.get("item-b")
        assert b.state == State.BLOCKED
        assert b.last_error and b.last_error.startswith("blocked: dependency item-a is dead: lease")

    def test_given_dead_or_blocked_dependency_when_pushed_then_blocked_at_once(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec("a", max_attempts=1), spec("b", depends_on=("item-a",))])
        lease = queue.lease("w", TTL)
        assert lease
        queue.fail(lease.item.id, lease.token, "boom")
        queue.push([spec("c", depends_on=("item-a",)), spec("d", depends_on=("item-b",))])
        for item_id in ("item-c", "item-d"):
            item = queue.get(item_id)
            assert item.state == State.BLOCKED
            assert item.last_error == "blocked: dependency item-a is dead: boom"

    def test_forced_push_of_a_dead_item_unblocks_its_dependents(self, queue: WorkQueue) -> None:
        queue.push([spec("a", max_attempts=1), spec("b", depends_on=("item-a",))])
        lease = queue.lease("w", TTL)
        assert lease
        queue.fail(lease.item.id, lease.token, "boom")
        assert queue.push([spec("a", max_attempts=1)], force=True) == [PushOutcome.RESET]
        assert queue.get("item-a").state == State.READY
        assert queue.get("item-b").state == State.WAITING

    def test_forced_push_of_a_done_dependency_makes_a_ready_dependent_wait_again(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec("a"), spec("b", depends_on=("item-a",))])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete(lease.item.id, lease.token)
        assert queue.get("item-b").state == State.READY
        queue.push([spec("a")], force=True)
        assert queue.get("item-b").state == State.WAITING
        first = queue.lease("w", TTL)
        assert first and first.item.id == "item-a"
        assert queue.lease("w", TTL) is None
        queue.complete(first.item.id, first.token)
        second = queue.lease("w", TTL)
        assert second and second.item.id == "item-b"

    def test_forced_push_replaces_the_dependencies(self, queue: WorkQueue) -> None:
        queue.push([spec("b"), spec("c", depends_on=("item-b",))])
        queue.push([spec("a"), spec("b", depends_on=("item-a",))], force=True)
        assert queue.get("item-b").depends_on == ("item-a",)
        assert queue.get("item-b").state == State.WAITING
        order = []
        while (lease := queue.lease("w", TTL)) is not None:
            order.append(lease.item.id)
            queue.complete(lease.item.id, lease.token)
        assert order == ["item-a", "item-b", "item-c"]

    def test_forced_push_that_closes_a_cycle_is_refused_and_changes_nothing(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec("a"), spec("b", depends_on=("item-a",))])
        with pytest.raises(QueueError, match="cycle"):
            queue.push([spec("x"), spec("a", depends_on=("item-b",))], force=True)
        assert queue.get("item-a").depends_on == ()
        assert [i.id for i in queue.items()] == ["item-a", "item-b"]
        with pytest.raises(QueueError, match="cycle"):
            queue.push([spec("a", depends_on=("item-a",))], force=True)

    def test_given_done_dependency_when_pushed_then_ready_at_once(self, queue: WorkQueue) -> None:
        queue.push([spec("a")])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete(lease.item.id, lease.token)
        queue.push([spec("b", depends_on=("item-a",))])
        assert queue.get("item-b").state == State.READY

    def test_chain_runs_in_dependency_order_even_when_pushed_reversed_priority(
        self, queue: WorkQueue
    ) -> None:
        specs = [spec(0)] + [
            spec(i, depends_on=(f"item-{i - 1}",), priority=9) for i in range(1, 4)
        ]
        queue.push(specs)
        order = []
        while (lease := queue.lease("w", TTL)) is not None:
            order.append(lease.item.id)
            queue.complete(lease.item.id, lease.token)
        assert order == ["item-0", "item-1", "item-2", "item-3"]

    # -- leases, fencing and expiry ----------------------------------------------------------

    def test_lease_returns_none_on_empty_queue(self, queue: WorkQueue) -> None:
        assert queue.lease("w", TTL) is None
        assert queue.drained()

    def test_given_leased_item_then_no_one_else_gets_it(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        assert queue.lease("w1", TTL)
        assert queue.lease("w2", TTL) is None
        item = queue.get("item-1")
        assert item.state == State.LEASED and item.worker == "w1"

    def test_given_expired_lease_when_another_worker_leases_then_reclaimed_with_newer_token(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1)])
        first = queue.lease("w1", TTL)
        assert first
        clock.advance(TTL - 1)
        assert queue.lease("w2", TTL) is None  # not expired yet
        clock.advance(2)
        second = queue.lease("w2", TTL)
        assert second and second.item.id == "item-1"
        assert second.token > first.token
        assert second.item.attempts == 2  # a lost lease counts as an attempt

    def test_given_stale_token_then_complete_fail_heartbeat_release_refused(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1)])
        old = queue.lease("w1", TTL)
        assert old
        clock.advance(TTL + 1)
        new = queue.lease("w2", TTL)
        assert new
        with pytest.raises(LeaseLost):
            queue.complete("item-1", old.token, {"late": True})
        with pytest.raises(LeaseLost):
            queue.fail("item-1", old.token, "late")
        with pytest.raises(LeaseLost):
            queue.heartbeat("item-1", old.token, TTL)
        with pytest.raises(LeaseLost):
            queue.release("item-1", old.token)
        item = queue.get("item-1")
        assert item.state == State.LEASED and item.worker == "w2" and item.result is None
        queue.complete("item-1", new.token, {"by": "w2"})
        assert queue.get("item-1").result == {"by": "w2"}

    def test_given_completed_item_then_second_complete_refused(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete("item-1", lease.token, {"n": 1})
        with pytest.raises(LeaseLost):
            queue.complete("item-1", lease.token, {"n": 2})
        assert queue.get("item-1").result == {"n": 1}

    def test_heartbeat_extends_the_deadline(self, queue: WorkQueue, clock: FakeClock) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w1", TTL)
        assert lease
        for _ in range(5):
            clock.advance(TTL - 5)
            deadline = queue.heartbeat("item-1", lease.token, TTL)
            assert deadline == pytest.approx(clock.now + TTL)
            assert queue.lease("w2", TTL) is None
        queue.complete("item-1", lease.token)
        assert queue.get("item-1").state == State.DONE

    def test_heartbeat_cannot_revive_an_expired_lease(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w1", TTL)
        assert lease
        clock.advance(TTL + 1)
        with pytest.raises(LeaseLost):
            queue.heartbeat("item-1", lease.token, TTL)

    def test_unknown_item_is_reported(self, queue: WorkQueue) -> None:
        with pytest.raises(UnknownItem):
            queue.get("missing")
        with pytest.raises((UnknownItem, LeaseLost)):
            queue.complete("missing", 1)

    # -- failure, retry, dead ----------------------------------------------------------------

    def test_given_failure_then_retried_after_backoff_then_dead_with_error(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1)])
        backoffs = []
        for attempt in (1, 2):
            lease = queue.lease("w", TTL)
            assert lease and lease.item.attempts == attempt
            assert queue.fail("item-1", lease.token, f"boom {attempt}") == State.READY
            assert queue.lease("w", TTL) is None  # backing off
            item = queue.get("item-1")
            assert item.state == State.READY and item.last_error == f"boom {attempt}"
            backoffs.append(item.available_at - clock.now)
            clock.advance(item.available_at - clock.now)
        assert backoffs == [10.0, 20.0]
        lease = queue.lease("w", TTL)
        assert lease and lease.item.attempts == 3
        assert queue.fail("item-1", lease.token, "boom 3") == State.DEAD
        item = queue.get("item-1")
        assert item.state == State.DEAD and item.last_error == "boom 3"
        assert queue.drained()

    def test_given_permanent_failure_then_dead_at_once_and_dependents_blocked(
        self, queue: WorkQueue
    ) -> None:
        """Given an item with 3 attempts and a dependent, when its first attempt fails with a
        permanent error, then it is dead at once with that error (one attempt in its history)
        and its dependent is blocked behind it; an ordinary failure of another item is still
        retried."""
        queue.push([spec(1), spec(2, depends_on=("item-1",)), spec(3)])
        lease = queue.lease("w", TTL)
        assert lease and lease.item.id == "item-1" and lease.item.attempts == 1
        error = "UnknownTask: task 'os:system' is not allowed"
        assert queue.fail("item-1", lease.token, error, permanent=True) == State.DEAD
        item = queue.get("item-1")
        assert item.state == State.DEAD and item.attempts == 1 and item.last_error == error
        blocked = queue.get("item-2")
        assert blocked.state == State.BLOCKED and "item-1" in (blocked.last_error or "")
        assert [(h.item_id, h.outcome, h.error) for h in queue.history()] == [
            ("item-1", "dead", error)
        ]
        other = queue.lease("w", TTL)
        assert other and other.item.id == "item-3"
        assert queue.fail("item-3", other.token, "boom", permanent=False) == State.READY

    def test_permanent_failure_with_a_stale_token_is_refused(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1)])
        old = queue.lease("w1", TTL)
        assert old
        clock.advance(TTL + 1)
        new = queue.lease("w2", TTL)
        assert new and new.token > old.token
        with pytest.raises(LeaseLost):
            queue.fail("item-1", old.token, "late", permanent=True)
        item = queue.get("item-1")
        assert item.state == State.LEASED and item.worker == "w2"

    def test_given_lease_lost_max_attempts_times_then_dead(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1), spec(2)])
        for _ in range(3):
            lease = queue.lease("w", TTL)
            assert lease and lease.item.id == "item-1"
            clock.advance(TTL + 1)
        lease = queue.lease("w", TTL)
        assert lease and lease.item.id == "item-2"
        item = queue.get("item-1")
        assert item.state == State.DEAD and "lease expired" in (item.last_error or "")

    def test_release_does_not_count_an_attempt(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        for _ in range(5):
            lease = queue.lease("w", TTL)
            assert lease and lease.item.attempts == 1
            queue.release("item-1", lease.token)
        item = queue.get("item-1")
        assert item.state == State.READY and item.attempts == 0

    def test_released_item_is_leasable_at_once_with_newer_token(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        first = queue.lease("w1", TTL)
        assert first
        queue.release("item-1", first.token)
        second = queue.lease("w2", TTL)
        assert second and second.token > first.token
        with pytest.raises(LeaseLost):
            queue.complete("item-1", first.token)

    def test_requeue_dead_gives_fresh_attempts(self, queue: WorkQueue) -> None:
        queue.push([spec(1, max_attempts=1), spec(2, max_attempts=1)])
        for _ in range(2):
            lease = queue.lease("w", TTL)
            assert lease
            queue.fail(lease.item.id, lease.token, "boom")
        assert queue.counts()[State.DEAD] == 2
        assert queue.requeue_dead(["item-2"]) == 1
        assert queue.get("item-2").state == State.READY and queue.get("item-2").attempts == 0
        assert queue.requeue_dead() == 1
        assert queue.counts()[State.READY] == 2

    # -- drained, counts, listing ------------------------------------------------------------

    def test_drained_only_when_nothing_waiting_ready_or_leased(self, queue: WorkQueue) -> None:
        queue.push([spec(1), spec(2, depends_on=("item-1",))])
        assert not queue.drained()
        lease = queue.lease("w", TTL)
        assert lease and not queue.drained()
        queue.complete("item-1", lease.token)
        assert not queue.drained()
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete("item-2", lease.token)
        assert queue.drained()
        counts = queue.counts()
        assert counts[State.DONE] == 2 and sum(counts.values()) == 2

    def test_items_lists_in_push_order_with_filter(self, queue: WorkQueue) -> None:
        queue.push([spec(i) for i in range(4)])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete(lease.item.id, lease.token)
        assert [i.id for i in queue.items()] == [f"item-{i}" for i in range(4)]
        assert [i.id for i in queue.items([State.READY])] == ["item-1", "item-2", "item-3"]
        assert [i.id for i in queue.items(limit=2)] == ["item-0", "item-1"]

    def test_items_of_each_state_are_listed_and_counted(self, queue: WorkQueue) -> None:
        """Given items ready now, ready after a backoff, leased and waiting, then each state
        lists its items in push order (whatever their priority) and counts them."""
        queue.push(
            [spec(0), spec(1, priority=5), spec(2), spec(3), spec(4, depends_on=("item-0",))]
        )
        a, b = queue.lease("w", TTL), queue.lease("w", TTL)
        assert a and b and (a.item.id, b.item.id) == ("item-1", "item-0")
        assert queue.fail("item-0", b.token, "boom") == State.READY  # ready after a backoff
        assert [i.id for i in queue.items([State.READY])] == ["item-0", "item-2", "item-3"]
        assert [i.id for i in queue.items([State.READY], limit=2)] == ["item-0", "item-2"]
        assert [i.id for i in queue.items([State.LEASED])] == ["item-1"]
        assert [i.id for i in queue.items([State.WAITING, State.LEASED])] == ["item-1", "item-4"]
        counts = queue.counts()
        assert (counts[State.READY], counts[State.LEASED], counts[State.WAITING]) == (3, 1, 1)
        assert counts[State.DONE] == counts[State.DEAD] == 0

    def test_complete_stores_result_and_outputs(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w", TTL)
        assert lease
        pub = Publication(staged=".staging/x/a.json", final="runs/r/a.json", sha256="ab" * 32)
        queue.complete("item-1", lease.token, {"auc": 0.9}, outputs=[pub])
        item = queue.get("item-1")
        assert item.result == {"auc": 0.9} and item.outputs == (pub,)

    def test_history_records_each_ended_attempt(self, queue: WorkQueue, clock: FakeClock) -> None:
        queue.push([spec(1), spec(2)])
        a = queue.lease("w1", TTL)
        assert a
        error = 'ValueError: "bad" row \\ 7 – é\t'
        queue.fail(a.item.id, a.token, error)
        b = queue.lease("w2", TTL)
        assert b
        queue.complete(b.item.id, b.token)
        outcomes = [(h.item_id, h.worker, h.outcome) for h in queue.history()]
        assert outcomes == [("item-1", "w1", "failed"), ("item-2", "w2", "done")]
        assert [h.error for h in queue.history()] == [error, None]
        assert queue.get("item-1").last_error == error
        assert [h.token for h in queue.history()] == [a.token, b.token]

    def test_purge_empties_everything(self, queue: WorkQueue) -> None:
        queue.push([spec(1)])
        queue.purge()
        assert queue.items() == [] and queue.drained()
        assert queue.lineage_head("r").version == 0

    # -- worker reports ----------------------------------------------------------------------

    def test_worker_reports_are_upserted_and_stamped(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        a = WorkerInfo(id="a", host="h1", pid=1, started_at=clock.now)
        queue.report_worker(a)
        clock.advance(5)
        queue.report_worker(WorkerInfo(id="b", host="h2", pid=2, started_at=clock.now))
        clock.advance(5)
        queue.report_worker(replace(a, state="working", item_id="item-1", item_since=clock.now))
        got = queue.workers()
        assert [w.id for w in got] == ["a", "b"]
        assert got[0].state == "working" and got[0].item_id == "item-1"
        assert got[0].last_seen == clock.now and got[1].last_seen == clock.now - 5

    def test_stale_worker_reports_are_pruned(self, queue: WorkQueue, clock: FakeClock) -> None:
        queue.report_worker(WorkerInfo(id="old", host="h", pid=1, started_at=clock.now))
        clock.advance(WORKER_RETENTION + 1)
        queue.report_worker(WorkerInfo(id="new", host="h", pid=2, started_at=clock.now))
        assert [w.id for w in queue.workers()] == ["new"]
        queue.purge()
        assert queue.workers() == []

    # -- lineage -----------------------------------------------------------------------------

    def _step(self, version: int, dataset: str) -> LineageStep:
        ckpt = Publication(
            staged=f".staging/{dataset}", final=f"runs/r/checkpoints/v{version}", sha256="0" * 64
        )
        head = LineageHead(run="r", version=version, checkpoint=ckpt, dataset=dataset)
        return LineageStep(expected_version=version - 1, head=head)

    def test_lineage_advances_atomically_with_completion(self, queue: WorkQueue) -> None:
        assert queue.lineage_head("r") == LineageHead(run="r")
        queue.push([spec("d1"), spec("d2")])
        for version, dataset in ((1, "d1"), (2, "d2")):
            lease = queue.lease("w", TTL)
            assert lease
            queue.complete(lease.item.id, lease.token, lineage=self._step(version, dataset))
        head = queue.lineage_head("r")
        assert head.version == 2 and head.dataset == "d2"
        assert head.checkpoint and head.checkpoint.final == "runs/r/checkpoints/v2"
        assert [h.dataset for h in queue.lineage("r")] == ["d1", "d2"]
        assert queue.lineage_head("other").version == 0

    def test_given_moved_head_then_step_refused_and_item_untouched(self, queue: WorkQueue) -> None:
        queue.push([spec("d1"), spec("d2")])
        a = queue.lease("w1", TTL)
        b = queue.lease("w2", TTL)
        assert a and b
        queue.complete(a.item.id, a.token, lineage=self._step(1, "d1"))
        with pytest.raises(LineageConflict):
            queue.complete(b.item.id, b.token, lineage=self._step(1, "d2"))
        assert queue.get(b.item.id).state == State.LEASED
        assert queue.lineage_head("r").dataset == "d1"
        queue.complete(b.item.id, b.token, lineage=self._step(2, "d2"))
        assert queue.lineage_head("r").version == 2

    def test_given_stale_token_then_lineage_unchanged(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec("d1")])
        old = queue.lease("w1", TTL)
        assert old
        clock.advance(TTL + 1)
        assert queue.lease("w2", TTL)
        with pytest.raises(LeaseLost):
            queue.complete(old.item.id, old.token, lineage=self._step(1, "d1"))
        assert queue.lineage_head("r").version == 0

    # -- complete_and_lease: a worker's steady state in one step ------------------------------

    def test_complete_and_lease_commits_and_leases_the_next_in_order(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        """Given a, b, then c (priority 5) waiting on a, when a is completed and the next item
        leased in one call, then c - released by that completion - comes before b."""
        queue.push([spec("a"), spec("b"), spec("c", depends_on=("item-a",), priority=5)])
        first = queue.lease("w", TTL)
        assert first and first.item.id == "item-a"
        pub = Publication(staged=".staging/x/a.json", final="runs/r/a.json", sha256="ab" * 32)
        clock.advance(1)
        nxt = queue.complete_and_lease(
            "item-a", first.token, {"n": 1}, outputs=[pub], worker="w2", ttl=TTL
        )
        assert nxt and nxt.item.id == "item-c" and nxt.worker == "w2"
        assert nxt.token == 1 and nxt.item.attempts == 1 and nxt.item.state == State.LEASED
        assert nxt.deadline == pytest.approx(clock.now + TTL)
        assert nxt.item.payload == {"n": "c"} and nxt.item.depends_on == ("item-a",)
        done = queue.get("item-a")
        assert done.state == State.DONE and done.result == {"n": 1} and done.outputs == (pub,)
        held = queue.get("item-c")
        assert held.state == State.LEASED and held.worker == "w2" and held.token == nxt.token
        last = queue.complete_and_lease("item-c", nxt.token, worker="w2", ttl=TTL)
        assert last and last.item.id == "item-b"
        assert [(h.item_id, h.outcome) for h in queue.history()] == [
            ("item-a", "done"), ("item-c", "done"),
        ]  # fmt: skip

    def test_complete_and_lease_keeps_fifo_order(self, queue: WorkQueue) -> None:
        queue.push([spec(i) for i in range(4)])
        lease = queue.lease("w", TTL)
        order = []
        while lease is not None:
            order.append(lease.item.id)
            lease = queue.complete_and_lease(lease.item.id, lease.token, worker="w", ttl=TTL)
        assert order == [f"item-{i}" for i in range(4)]
        assert queue.counts()[State.DONE] == 4 and queue.drained()

    def test_complete_and_lease_on_an_empty_queue_completes_and_returns_none(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec(1)])
        lease = queue.lease("w", TTL)
        assert lease
        nxt = queue.complete_and_lease("item-1", lease.token, {"ok": 1}, worker="w", ttl=TTL)
        assert nxt is None
        assert queue.get("item-1").state == State.DONE and queue.get("item-1").result == {"ok": 1}
        assert queue.drained()

    def test_complete_and_lease_reclaims_expired_leases_first(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1), spec(2), spec(3)])
        lost = queue.lease("w1", TTL)
        clock.advance(10)
        mine = queue.lease("w2", TTL)
        assert lost and mine and mine.item.id == "item-2"
        clock.advance(TTL - 5)  # w1's lease has expired, w2's has not
        nxt = queue.complete_and_lease("item-2", mine.token, worker="w2", ttl=TTL)
        assert nxt and nxt.item.id == "item-1" and nxt.item.attempts == 2
        assert nxt.token > lost.token
        assert [h.outcome for h in queue.history()] == ["done", "expired"]

    def test_complete_and_lease_with_a_stale_token_raises_and_leases_nothing(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([spec(1), spec(2)])
        old = queue.lease("w1", TTL)
        assert old
        clock.advance(TTL + 1)
        new = queue.lease("w2", TTL)
        assert new and new.item.id == "item-1"
        with pytest.raises(LeaseLost):
            queue.complete_and_lease("item-1", old.token, {"late": True}, worker="w1", ttl=TTL)
        assert queue.get("item-2").state == State.READY and queue.counts()[State.LEASED] == 1
        item = queue.get("item-1")
        assert item.state == State.LEASED and item.worker == "w2" and item.result is None
        with pytest.raises((UnknownItem, LeaseLost)):
            queue.complete_and_lease("missing", 1, worker="w1", ttl=TTL)
        assert queue.get("item-2").state == State.READY

    def test_complete_and_lease_with_a_lineage_conflict_raises_and_leases_nothing(
        self, queue: WorkQueue
    ) -> None:
        queue.push([spec("d1"), spec("d2"), spec("d3")])
        a = queue.lease("w1", TTL)
        b = queue.lease("w2", TTL)
        assert a and b
        queue.complete(a.item.id, a.token, lineage=self._step(1, "d1"))
        with pytest.raises(LineageConflict):
            queue.complete_and_lease(
                b.item.id, b.token, lineage=self._step(1, "d2"), worker="w2", ttl=TTL
            )
        assert queue.get(b.item.id).state == State.LEASED
        assert queue.get("item-d3").state == State.READY
        assert queue.lineage_head("r").dataset == "d1"
        nxt = queue.complete_and_lease(
            b.item.id, b.token, lineage=self._step(2, "d2"), worker="w2", ttl=TTL
        )
        assert nxt and nxt.item.id == "item-d3"
        assert [h.dataset for h in queue.lineage("r")] == ["d1", "d2"]

    # -- generation --------------------------------------------------------------------------

    def test_given_a_push_then_the_generation_is_kept_until_a_purge(self, queue: WorkQueue) -> None:
        """Given a pushed queue, then its generation is a random id that later pushes keep;
        when purged, it is gone; the next push starts a new one."""
        queue.push([spec(1)])
        first = queue.generation()
        assert first and len(first) >= 16
        queue.push([spec(2)])
        lease = queue.lease("w", TTL)
        assert lease
        queue.complete(lease.item.id, lease.token)
        assert queue.generation() == first
        queue.purge()
        assert queue.generation() is None
        queue.push([spec(1)])
        second = queue.generation()
        assert second and second != first

    # -- lineage reset -----------------------------------------------------------------------

    def _trained_chain(self, queue: WorkQueue, days: int = 5) -> None:
        """Train items t1..tN of run r, each depending on the one before, all done: vN."""
        queue.push(
            [
                ItemSpec(
                    payload={"run": "r", "day": k}, id=f"t{k}", depends_on=(f"t{k - 1}",) * (k > 1)
                )
                for k in range(1, days + 1)
            ]
        )
        for k in range(1, days + 1):
            lease = queue.lease("w", TTL)
            assert lease and lease.item.id == f"t{k}"
            queue.complete(lease.item.id, lease.token, {"k": k}, lineage=self._step(k, f"d{k}"))

    def test_reset_lineage_moves_the_head_back_and_rearms_the_later_steps_in_order(
        self, queue: WorkQueue
    ) -> None:
        """Given v1..v5 trained by t1..t5, when reset to v3 re-arming t4 and t5, then the head
        is v3, t4 is ready and t5 waits for it, both with fresh attempts and no result; the
        chain then re-trains v4 and v5 from v3 through the ordinary compare-and-set."""
        self._trained_chain(queue)
        before = queue.get("t4").token
        queue.reset_lineage("r", 3, ["t4", "t5"])
        assert queue.lineage_head("r").version == 3
        assert [h.version for h in queue.lineage("r")] == [1, 2, 3]
        t4, t5 = queue.get("t4"), queue.get("t5")
        assert (t4.state, t4.attempts, t4.result) == (State.READY, 0, None)
        assert (t5.state, t5.attempts, t5.result) == (State.WAITING, 0, None)
        assert queue.counts()[State.READY] == 1 and not queue.drained()
        for k in (4, 5):
            lease = queue.lease("w", TTL)
            assert lease and lease.item.id == f"t{k}" and lease.item.attempts == 1
            assert lease.token > before
            queue.complete(lease.item.id, lease.token, lineage=self._step(k, f"d{k}"))
        assert [h.version for h in queue.lineage("r")] == [1, 2, 3, 4, 5]
        assert queue.drained()

    def test_reset_lineage_result_does_not_depend_on_the_order_given(
        self, queue: WorkQueue
    ) -> None:
        self._trained_chain(queue, 3)
        queue.reset_lineage("r", 0, ["t3", "t2", "t1"])
        assert queue.lineage_head("r") == LineageHead(run="r") and queue.lineage("r") == []
        states = [queue.get(f"t{k}").state for k in (1, 2, 3)]
        assert states == [State.READY, State.WAITING, State.WAITING]
        lease = queue.lease("w", TTL)
        assert lease and lease.item.id == "t1" and queue.lease("w", TTL) is None

    def test_reset_lineage_refused_while_an_item_of_the_run_is_leased(
        self, queue: WorkQueue
    ) -> None:
        """Given a leased item of the run, then the reset is refused and nothing changed: a
        step running against v5 would otherwise commit against the moved head."""
        self._trained_chain(queue)
        queue.push([ItemSpec(payload={"run": "r", "task": "score"}, id="s1")])
        held = queue.lease("w", TTL)
        assert held and held.item.id == "s1"
        with pytest.raises(QueueError, match="s1 of run 'r' is leased"):
            queue.reset_lineage("r", 3, ["t4", "t5"])
        assert queue.lineage_head("r").version == 5
        assert queue.get("t4").state == State.DONE and queue.get("t5").state == State.DONE
        queue.push([ItemSpec(payload={"run": "other"}, id="o1")])
        queue.complete(held.item.id, held.token)
        other = queue.lease("w", TTL)  # an item of another run may be leased meanwhile
        assert other and other.item.id == "o1"
        queue.reset_lineage("r", 3, ["t4", "t5"])
        assert queue.lineage_head("r").version == 3

    def test_reset_lineage_refuses_unknown_versions_and_items(self, queue: WorkQueue) -> None:
        self._trained_chain(queue, 3)
        with pytest.raises(QueueError, match="4"):
            queue.reset_lineage("r", 4, [])
        with pytest.raises(UnknownItem, match="nope"):
            queue.reset_lineage("r", 1, ["t2", "nope"])
        assert queue.lineage_head("r").version == 3 and queue.get("t2").state == State.DONE

    def test_reset_lineage_makes_waiting_dependents_wait_again_and_refuses_ready_ones(
        self, queue: WorkQueue
    ) -> None:
        """Given x waiting for t3 (done) and y (ready), when t3 is re-armed, then x waits for
        both again; once x is ready, a reset re-arming t3 alone is refused."""
        self._trained_chain(queue, 3)
        queue.push([spec("y", priority=5), spec("x", depends_on=("t3", "item-y"))])
        assert queue.get("item-x").state == State.WAITING
        queue.reset_lineage("r", 2, ["t3"])
        y = queue.lease("w", TTL)
        assert y and y.item.id == "item-y"
        queue.complete(y.item.id, y.token)
        assert queue.get("item-x").state == State.WAITING  # t3 has not run again yet
        t3 = queue.lease("w", TTL)
        assert t3 and t3.item.id == "t3"
        queue.complete(t3.item.id, t3.token, lineage=self._step(3, "d3"))
        assert queue.get("item-x").state == State.READY
        with pytest.raises(QueueError, match="item-x is ready or leased and depends on t3"):
            queue.reset_lineage("r", 2, ["t3"])
        assert queue.get("t3").state == State.DONE and queue.lineage_head("r").version == 3

    # -- several processes -------------------------------------------------------------------

    @pytest.mark.timeout(120)
    def test_concurrent_processes_never_get_the_same_item(self, queue: WorkQueue) -> None:
        n = 200
        queue.push([spec(i) for i in range(n)])
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_lease_all, args=(queue.url, f"p{k}", out)) for k in range(4)]
        for p in procs:
            p.start()
        got = [item for _ in procs for item in out.get(timeout=100)]
        for p in procs:
            p.join(timeout=30)
        assert sorted(got) == sorted(f"item-{i}" for i in range(n))
        assert queue.counts()[State.DONE] == n

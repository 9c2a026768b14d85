"""The batched half of the queue contract: ``lease_many`` and ``complete_and_lease_many``.

Part of :class:`tests.support.queue_contract.QueueContract` (which every backend subclasses), so
both backends pass it unchanged; it uses that class's ``queue`` and ``clock`` fixtures.
"""

from __future__ import annotations

import pytest

from batchml.errors import LeaseLost, LineageConflict, QueueError, UnknownItem
from batchml.queue.base import (
    MAX_BATCH,
    Commit,
    ItemSpec,
    LineageHead,
    LineageStep,
    State,
    WorkQueue,
)
from batchml.storage import Publication
from tests.support.clock import FakeClock

TTL = 30.0


def _spec(n: int | str, **kw: object) -> ItemSpec:
    return ItemSpec(payload={"n": n}, id=f"item-{n}", **kw)  # type: ignore[arg-type]


def _step(version: int, dataset: str) -> LineageStep:
    ckpt = Publication(
        staged=f".staging/{dataset}", final=f"runs/r/checkpoints/v{version}", sha256="0" * 64
    )
    head = LineageHead(run="r", version=version, checkpoint=ckpt, dataset=dataset)
    return LineageStep(expected_version=version - 1, head=head)


class BatchContract:
    def test_lease_many_hands_out_the_items_lease_would_in_that_order(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([_spec(i) for i in range(5)] + [_spec("p", priority=3)])
        got = queue.lease_many("w", TTL, 3)
        assert [g.item.id for g in got] == ["item-p", "item-0", "item-1"]
        assert all(g.item.state == State.LEASED and g.worker == "w" for g in got)
        assert all(g.token == 1 and g.item.attempts == 1 for g in got)
        assert all(g.deadline == pytest.approx(clock.now + TTL) for g in got)
        for g in got:
            held = queue.get(g.item.id)
            assert held.state == State.LEASED and held.worker == "w" and held.token == g.token
        counts = queue.counts()
        assert counts[State.LEASED] == 3 and counts[State.READY] == 3
        rest = queue.lease_many("w2", TTL, 10)
        assert [g.item.id for g in rest] == ["item-2", "item-3", "item-4"]
        assert queue.lease_many("w", TTL, 4) == [] and queue.lease("w", TTL) is None
        assert queue.counts()[State.READY] == 0 and queue.counts()[State.LEASED] == 6

    def test_lease_many_reclaims_expired_leases_first(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([_spec(1), _spec(2)])
        lost = queue.lease_many("w1", TTL, 2)
        clock.advance(TTL + 1)
        again = queue.lease_many("w2", TTL, 5)
        assert [g.item.id for g in again] == ["item-1", "item-2"]
        assert all(g.item.attempts == 2 and g.token == 2 for g in again)
        assert [h.outcome for h in queue.history()] == ["expired", "expired"]
        with pytest.raises(LeaseLost):
            queue.complete(lost[0].item.id, lost[0].token)

    def test_complete_and_lease_many_commits_every_item_then_leases_the_next(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        """Given a, b, c, d and e (priority 5) waiting on a, when a and b are committed in one
        batch that also leases two items, then e (released by the batch) comes first."""
        queue.push(
            [_spec("a"), _spec("b"), _spec("c"), _spec("d"),
             _spec("e", depends_on=("item-a",), priority=5)]
        )  # fmt: skip
        a, b = queue.lease_many("w", TTL, 2)
        pub = Publication(staged=".staging/x/a.json", final="runs/r/a.json", sha256="ab" * 32)
        clock.advance(1)
        got = queue.complete_and_lease_many(
            [Commit(a.item.id, a.token, {"n": 1}, outputs=(pub,)), Commit(b.item.id, b.token)],
            worker="w2", ttl=TTL, n=2,
        )  # fmt: skip
        assert [g.item.id for g in got] == ["item-e", "item-c"]
        assert all(g.worker == "w2" and g.item.state == State.LEASED for g in got)
        done_a, done_b = queue.get("item-a"), queue.get("item-b")
        assert done_a.state == State.DONE and done_a.result == {"n": 1} and done_a.outputs == (pub,)
        assert done_b.state == State.DONE and done_b.result is None and done_b.outputs == ()
        assert [(h.item_id, h.outcome) for h in queue.history()] == [
            ("item-a", "done"), ("item-b", "done"),
        ]  # fmt: skip
        assert queue.complete_and_lease_many(
            [Commit(g.item.id, g.token) for g in got], worker="w2", ttl=TTL, n=0
        ) == []  # fmt: skip
        assert queue.counts()[State.DONE] == 4 and queue.get("item-d").state == State.READY
        last = queue.complete_and_lease_many([], worker="w3", ttl=TTL, n=5)
        assert [g.item.id for g in last] == ["item-d"]
        assert queue.complete_and_lease_many(
            [Commit("item-d", last[0].token)], worker="w3", ttl=TTL, n=5
        ) == []  # fmt: skip
        assert queue.drained()

    def test_a_batch_with_one_stale_commit_changes_nothing(
        self, queue: WorkQueue, clock: FakeClock
    ) -> None:
        queue.push([_spec(1), _spec(2), _spec(3)])
        first = queue.lease("w1", TTL)
        assert first
        clock.advance(TTL + 1)
        mine = queue.lease_many("w2", TTL, 2)  # item-1 again (reclaimed), and item-2
        assert [m.item.id for m in mine] == ["item-1", "item-2"]
        other = queue.lease("w3", TTL)
        assert other and other.item.id == "item-3"
        with pytest.raises(LeaseLost, match="item-1"):
            queue.complete_and_lease_many(
                [Commit("item-2", mine[1].token, {"x": 1}), Commit("item-1", first.token)],
                worker="w1", ttl=TTL, n=3,
            )  # fmt: skip
        for item_id, worker in (("item-1", "w2"), ("item-2", "w2"), ("item-3", "w3")):
            item = queue.get(item_id)
            assert item.state == State.LEASED and item.worker == worker and item.result is None
        with pytest.raises((UnknownItem, LeaseLost)):
            queue.complete_and_lease_many(
                [Commit("item-2", mine[1].token), Commit("missing", 1)], worker="w2", ttl=TTL, n=1
            )  # fmt: skip
        assert queue.get("item-2").state == State.LEASED
        assert [h.outcome for h in queue.history()] == ["expired"]

    def test_an_item_committed_twice_in_one_batch_is_refused_and_nothing_changes(
        self, queue: WorkQueue
    ) -> None:
        queue.push([_spec(1), _spec(2)])
        a = queue.lease("w", TTL)
        assert a
        with pytest.raises(LeaseLost):
            queue.complete_and_lease_many(
                [Commit(a.item.id, a.token), Commit(a.item.id, a.token)], worker="w", ttl=TTL, n=1
            )  # fmt: skip
        assert queue.get(a.item.id).state == State.LEASED and queue.history() == []
        assert queue.get("item-2").state == State.READY

    def test_lineage_steps_in_one_batch_advance_in_order_or_not_at_all(
        self, queue: WorkQueue
    ) -> None:
        queue.push([_spec("d1"), _spec("d2"), _spec("d3"), _spec("d4"), _spec("d5")])
        d1, d2, d3, d4 = queue.lease_many("w", TTL, 4)
        queue.complete_and_lease_many(
            [Commit(d1.item.id, d1.token, lineage=_step(1, "d1")),
             Commit(d2.item.id, d2.token, lineage=_step(2, "d2"))],
            worker="w", ttl=TTL, n=0,
        )  # fmt: skip
        assert [h.dataset for h in queue.lineage("r")] == ["d1", "d2"]
        with pytest.raises(LineageConflict):
            queue.complete_and_lease_many(
                [Commit(d3.item.id, d3.token, lineage=_step(2, "d3"))], worker="w", ttl=TTL, n=1
            )  # fmt: skip
        with pytest.raises(LineageConflict):  # the second step must expect what the first makes
            queue.complete_and_lease_many(
                [Commit(d3.item.id, d3.token, lineage=_step(3, "d3")),
                 Commit(d4.item.id, d4.token, lineage=_step(3, "d4"))],
                worker="w", ttl=TTL, n=1,
            )  # fmt: skip
        assert queue.lineage_head("r").version == 2
        assert queue.get(d3.item.id).state == State.LEASED
        assert queue.get(d4.item.id).state == State.LEASED
        assert queue.get("item-d5").state == State.READY

    def test_a_batch_is_bounded(self, queue: WorkQueue) -> None:
        queue.push([_spec(1), _spec(2)])
        assert len(queue.lease_many("w", TTL, MAX_BATCH + 5)) == 2
        with pytest.raises(QueueError, match="at most"):
            queue.complete_and_lease_many(
                [Commit(f"item-{k}", 1) for k in range(MAX_BATCH + 1)], worker="w", ttl=TTL, n=1
            )  # fmt: skip
        assert queue.counts()[State.LEASED] == 2

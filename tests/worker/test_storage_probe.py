"""A task stuck on hung storage must not keep its lease alive (tests/netfaults has the real
hung sshfs mount; these pin the mechanism with a probe that blocks the way a hung mount does)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from batchml.queue.base import ItemSpec, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.worker.heartbeat import Heartbeat
from batchml.worker.storage_probe import StorageProbe

log = logging.getLogger("tests.storage_probe")


def test_a_probe_blocked_in_the_kernel_is_no_answer_and_is_not_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given statvfs blocking (a hung mount), the probe says "no answer" after its timeout, at
    once on the next call (no second probe thread piles up), and "answers" once unblocked."""
    hung, calls = threading.Event(), []
    real = os.statvfs

    def statvfs(path: Any) -> Any:
        calls.append(path)
        hung.wait(30)
        return real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    probe = StorageProbe(tmp_path, timeout=0.2)
    assert probe.answers() is False
    assert probe.answers() is False and len(calls) == 1
    assert probe.blocked_for() > 0
    hung.set()
    monkeypatch.setattr(os, "statvfs", real)
    threading.Event().wait(0.1)
    assert probe.answers() is True and probe.blocked_for() == 0


def test_an_unusable_root_is_no_answer(tmp_path: Path) -> None:
    assert StorageProbe(tmp_path / "not-there", timeout=1.0).answers() is False
    assert StorageProbe(tmp_path, timeout=1.0).answers() is True


class _Probe(StorageProbe):
    def __init__(self, answer: bool) -> None:
        super().__init__(Path("/"), timeout=0.0)
        self.answer = answer

    def answers(self) -> bool:
        return self.answer


@pytest.mark.parametrize("storage_answers", [True, False])
def test_the_heartbeat_renews_only_while_the_storage_answers(
    tmp_path: Path, storage_answers: bool
) -> None:
    """Given a leased item, a heartbeat whose storage does not answer never renews: the lease is
    given up once its TTL has passed (lost is set) and the queue hands the item to another
    worker; while the storage answers, the same heartbeat keeps the lease."""
    queue = SqliteQueue(tmp_path / "q.db")
    queue.push([ItemSpec(payload={"task": "noop"}, id="a")])
    lease = queue.lease("w1", ttl=1.0)
    assert lease is not None
    renewals: list[float] = []
    real = queue.heartbeat

    def heartbeat(item_id: str, token: int, ttl: float) -> float:
        renewals.append(ttl)
        return real(item_id, token, ttl)

    queue.heartbeat = heartbeat  # type: ignore[method-assign]
    lost = threading.Event()
    beat = Heartbeat(queue, "a", lease.token, 1.0, 0.2, lost, log, probe=_Probe(storage_answers))
    beat.start()
    try:
        if storage_answers:
            assert not lost.wait(2.0)
            assert renewals and queue.get("a").state == State.LEASED
        else:
            assert lost.wait(10.0)
            assert renewals == []
            other = queue.lease("w2", ttl=5.0)
            assert other is not None and other.item.id == "a" and other.token > lease.token
    finally:
        beat.stop()

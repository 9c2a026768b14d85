"""Workers really killed (SIGKILL) in the middle of training, on the embedded SQLite queue.

Given the same datasets, when one run is undisturbed with one worker and another has workers
killed mid-item again and again (and replaced), then both lineages hold every day exactly once,
in date order, and their final model parameters are bit-identical.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.fraud import plan
from batchml.queue import open_queue
from batchml.queue.base import State, WorkQueue
from batchml.settings import Settings
from batchml.worker.local import spawn_workers
from tests.support.fraud_data import SMALL, small_root
from tests.support.kill_schedule import KillSchedule

pytestmark = pytest.mark.slow
WORKER_ARGS = ["--lease-ttl", "1.5", "--poll", "0.05"]


CONFIG = replace(SMALL, n_days=30)


def _fill(root: Path) -> tuple[Settings, WorkQueue, list[str]]:
    days = small_root(root.parent / "cache", root, CONFIG)
    settings = Settings(root=root)
    queue = open_queue(settings.resolved_queue_url, settings.queue_options())
    train, test = days[:-14], days[-7:]
    queue.push(plan.training_items(queue, train, run=settings.run, test_days=test))
    return settings, queue, train


def _pid_holding_a_lease(queue: WorkQueue) -> int | None:
    """The pid of a worker holding a lease on an item that can afford one more lost attempt
    (killing the same item max_attempts times would rightly make it dead)."""
    for item in queue.items([State.LEASED]):
        if item.worker and item.worker.count("-") >= 2 and item.attempts < item.max_attempts - 1:
            return int(item.worker.rsplit("-", 2)[-2])
    return None


@pytest.mark.timeout(240)
def test_sigkill_mid_training_gives_the_same_lineage_as_an_undisturbed_run(tmp_path: Path) -> None:
    ref_settings, ref_queue, days = _fill(tmp_path / "undisturbed")
    [ref] = spawn_workers(ref_settings, 1, tmp_path / "undisturbed-logs", WORKER_ARGS)
    assert ref.wait(timeout=150) == exitcodes.OK

    settings, queue, _ = _fill(tmp_path / "chaos")
    rng = random.Random(1)
    procs = spawn_workers(settings, 2, tmp_path / "chaos-logs", WORKER_ARGS)
    schedule = KillSchedule(rng, seconds=(0.6, 1.4), items=(2, 3), first_after=2)
    kills = 0
    deadline = time.monotonic() + 180
    while not queue.drained() and time.monotonic() < deadline:
        time.sleep(0.05)
        done = queue.counts()[State.DONE]
        victim = _pid_holding_a_lease(queue) if kills < 5 and schedule.due(done) else None
        if victim is not None and any(p.pid == victim and p.poll() is None for p in procs):
            os.kill(victim, signal.SIGKILL)
            kills += 1
            schedule.killed(done)
        procs = [p for p in procs if p.poll() is None]
        procs += spawn_workers(settings, 2 - len(procs), tmp_path / "chaos-logs", WORKER_ARGS)
    for proc in procs:
        proc.wait(timeout=60)
    assert queue.drained(), "the chaos run did not finish in time"

    assert kills >= 3
    expired = [h for h in queue.history(10_000) if h.outcome == "expired"]
    assert expired, "no kill landed while an item was leased"
    counts = queue.counts()
    assert counts[State.DEAD] == 0 and counts[State.DONE] == len(queue.items())

    chain, ref_chain = queue.lineage("default"), ref_queue.lineage("default")
    assert [h.dataset for h in chain] == days == [h.dataset for h in ref_chain]
    assert [h.version for h in chain] == list(range(1, len(days) + 1))
    assert chain[-1].params_digest == ref_chain[-1].params_digest
    assert [h.params_digest for h in chain] == [h.params_digest for h in ref_chain]
    assert chain[-1].checkpoint and ref_chain[-1].checkpoint
    assert chain[-1].checkpoint.sha256 == ref_chain[-1].checkpoint.sha256

    # exactly-once effects: one checkpoint (+ its sha256) per version, nothing half-written
    ckpts = sorted(p.name for p in (tmp_path / "chaos/runs/default/checkpoints").iterdir())
    assert len(ckpts) == 2 * len(days) and not [n for n in ckpts if n.startswith(".")]
    records = list((tmp_path / "chaos/runs/default/records").glob("*.json"))
    assert len(records) == len(queue.items())
    report = (tmp_path / "chaos/runs/default/report.txt").read_text()
    assert report.count("Training dataset:") == len(days)

"""Drive a queue of fraud items through the WorkQueue API alone, no tasks and no processes.

A ``fraud.train`` item completes with the lineage step a real train task would make (one
version per day, the day as the head's dataset); any other item just completes. What the
chain tests and the property test assert on is the order the lineage grew in.
"""

from __future__ import annotations

from batchml.queue.base import Lease, LineageHead, LineageStep, WorkQueue

TTL = 30.0


def complete(queue: WorkQueue, lease: Lease) -> None:
    """Commit a leased item; a train item advances its run's head by one version."""
    payload = lease.item.payload
    step = None
    if payload.get("task") == "fraud.train":
        run = str(payload["run"])
        head = queue.lineage_head(run)
        step = LineageStep(
            expected_version=head.version,
            head=LineageHead(
                run=run, version=head.version + 1, dataset=str(payload["dataset"]),
                item_id=lease.item.id,
            ),
        )  # fmt: skip
    queue.complete(lease.item.id, lease.token, {"ok": True}, lineage=step)


def drain(queue: WorkQueue, worker: str = "w") -> list[str]:
    """Lease and complete until nothing is ready; the ids completed, in order."""
    done = []
    while (lease := queue.lease(worker, TTL)) is not None:
        complete(queue, lease)
        done.append(lease.item.id)
    return done


def lineage_days(queue: WorkQueue, run: str = "default") -> list[str]:
    """The days of the run's lineage, oldest version first."""
    return [str(head.dataset) for head in queue.lineage(run)]

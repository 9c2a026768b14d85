"""Process exit codes, in one place: a Kubernetes Job's podFailurePolicy keys on them.

``0``   the queue is drained and nothing is dead: the Job's work is all done
``1``   the queue is drained but some items are dead (see ``batchml queue status``)
``2``   usage error (unknown option; Click's own code)
``65``  the queue lost its data (EX_DATAERR): its generation changed or items vanished, e.g. a
        Redis restarted without persistence; the unprocessed items must be pushed again
``69``  the queue backend is unreachable (EX_UNAVAILABLE): worth a retry on another pod
``78``  configuration error (EX_CONFIG): a new pod will fail the same way; fail the Job
``143`` stopped by SIGTERM (128 + 15) before the queue was drained: preemption, not failure
"""

OK = 0
DEAD_ITEMS = 1
USAGE = 2
DATA_LOSS = 65
UNAVAILABLE = 69
CONFIG = 78
TERMINATED = 143

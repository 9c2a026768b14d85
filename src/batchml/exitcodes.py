"""Process exit codes, in one place: a Kubernetes Job's podFailurePolicy keys on them.

Every command exits with one of these; an expected failure prints one line on stderr first.

::

    code  name         meaning
    ----  -----------  ---------------------------------------------------------------------------
    0     OK           done; for ``worker``: the queue is drained and nothing is dead
    1     DEAD_ITEMS   the queue is drained but some items are dead (``batchml queue status``),
                       or a dataset or storage file was refused (the line names it)
    2     USAGE        usage error: unknown option, bad option value (``--log-level LOUD``)
    65    DATA_LOSS    the queue lost its data: its database file is damaged, its generation
                       changed or items vanished; a retry cannot bring them back
    69    UNAVAILABLE  the queue backend is unreachable (EX_UNAVAILABLE): worth a retry later
    70    SOFTWARE     an unexpected internal error, a bug (EX_SOFTWARE); ``--log-level DEBUG``
                       prints its traceback
    78    CONFIG       configuration error (EX_CONFIG): a missing storage root or queue, a bad
                       URL, port or setting; a new pod would fail the same way
    130   INTERRUPTED  stopped by SIGINT / Ctrl-C (128 + 2); a worker finishes or releases its item
    143   TERMINATED   stopped by SIGTERM (128 + 15) before the queue was drained: preemption
"""

OK = 0
DEAD_ITEMS = 1
USAGE = 2
DATA_LOSS = 65
UNAVAILABLE = 69
SOFTWARE = 70
CONFIG = 78
INTERRUPTED = 130
TERMINATED = 143

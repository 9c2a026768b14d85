"""batchml: fault-tolerant batch machine-learning workloads.

A work queue (embedded SQLite, or Redis for several machines) hands out datasets to
workers that may be killed at any moment; each item's effect lands exactly once.
"""

__version__ = "0.1.0"

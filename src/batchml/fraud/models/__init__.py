"""Incremental models, their checkpoints, and the lineage of versions kept in the queue."""

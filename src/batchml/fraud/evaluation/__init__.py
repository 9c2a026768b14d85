"""Assessing a lineage: the test protocol, metrics, curves, and the test sets kept in memory."""

"""The embedded backend: one SQLite file in WAL mode, one ``BEGIN IMMEDIATE`` per operation.

``queue`` the WorkQueue itself, ``schema`` its tables and migrations, ``deps`` dependency
bookkeeping (waiting/blocked), ``reset`` lineage reset, ``fs`` the refusal of network file systems.
"""

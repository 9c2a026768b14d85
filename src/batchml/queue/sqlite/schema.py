"""The SQLite queue's tables, and the generation a new queue file gets.

``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; a file written by a newer batchml is
refused rather than misread.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    token         INTEGER NOT NULL DEFAULT 0,
    worker        TEXT,
    leased_at     REAL,
    deadline      REAL,
    available_at  REAL NOT NULL DEFAULT 0,
    pending_deps  INTEGER NOT NULL DEFAULT 0,
    depends_on    TEXT NOT NULL DEFAULT '[]',
    last_error    TEXT,
    result        TEXT,
    outputs       TEXT NOT NULL DEFAULT '[]',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_ready ON items (priority DESC, seq) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS items_deadline ON items (deadline) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS items_state ON items (state);
CREATE TABLE IF NOT EXISTS deps (
    depends_on TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    PRIMARY KEY (depends_on, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_item ON deps (item_id);
CREATE TABLE IF NOT EXISTS lineage (
    run      TEXT NOT NULL,
    version  INTEGER NOT NULL,
    head     TEXT NOT NULL,
    PRIMARY KEY (run, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    id        TEXT PRIMARY KEY,
    info      TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workers_seen ON workers (last_seen);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id    TEXT NOT NULL,
    token      INTEGER NOT NULL,
    worker     TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at   REAL NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT
);
"""


def first_generation(generation: str) -> str:
    """SQL that gives a queue file its generation when its ``meta`` table is new: a new file,
    or one written before generations existed (it gets one on its first open). The ``created``
    row stays, so a purged queue, whose generation was deleted, gets one only from a push."""
    return (
        "INSERT INTO meta (key, value) SELECT 'generation', "
        f"'{generation}' WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'created'); "
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('created', 'yes');"
    )

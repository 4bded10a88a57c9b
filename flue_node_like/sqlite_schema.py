"""The SQLite schema of the local target, and its version check."""

from __future__ import annotations

import sqlite3

from flue_core.errors import UnsupportedSchemaVersion

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS flue_runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL,
    input            TEXT,
    key              TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    result           TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner            TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS flue_runs_key ON flue_runs (workflow, key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_order ON flue_runs (created_at, run_id);
CREATE INDEX IF NOT EXISTS flue_runs_workflow_order ON flue_runs (workflow, created_at, run_id);
CREATE INDEX IF NOT EXISTS flue_runs_status_order ON flue_runs (status, created_at, run_id);
CREATE TABLE IF NOT EXISTS flue_events (
    run_id TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flue_steps (
    run_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flue_workers (
    worker_id    TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_started  TEXT,
    heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flue_ds_streams (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    path         TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    tail         INTEGER NOT NULL,
    touched_at   REAL NOT NULL,
    ttl          INTEGER,
    expires_at   REAL,
    closed       INTEGER NOT NULL DEFAULT 0,
    closed_by    TEXT,
    stream_seq   TEXT,
    fork_of      INTEGER,
    fork_at      INTEGER NOT NULL DEFAULT 0,
    forks        INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    spec         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS flue_ds_streams_expiry ON flue_ds_streams (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_ds_streams_ttl ON flue_ds_streams (touched_at) WHERE ttl IS NOT NULL;
CREATE TABLE IF NOT EXISTS flue_ds_records (
    stream_id INTEGER NOT NULL,
    pos       INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (stream_id, pos)
);
CREATE TABLE IF NOT EXISTS flue_ds_producers (
    stream_id   INTEGER NOT NULL,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) WITHOUT ROWID;
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database, or check the stored version matches this code."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO flue_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            stored = row[0]
            newer = stored.isdigit() and int(stored) > SCHEMA_VERSION
            raise UnsupportedSchemaVersion(
                f"The database was written by {'a newer' if newer else 'an unrecognised'} version of Flue"
                f" (schema {stored!r}; this version reads {SCHEMA_VERSION}).",
                details={"stored_version": stored, "supported_version": SCHEMA_VERSION},
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

"""The SQLite schema of the local target, and its version check."""

from __future__ import annotations

import sqlite3

from flue_core.errors import UnsupportedSchemaVersion

SCHEMA_VERSION = 4

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
    owner            TEXT,
    parent_run_id    TEXT,
    wake_at          TEXT,
    waiting_for      TEXT,
    carrier          TEXT,
    ready_at         TEXT,
    resume           INTEGER NOT NULL DEFAULT 0,
    recoveries       INTEGER NOT NULL DEFAULT 0,
    rerun_of         TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    concurrency_key  TEXT,
    rate_key         TEXT,
    debounce_key     TEXT
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
    seq    INTEGER NOT NULL DEFAULT 0,
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


#: What version 2 added (durable waits, signals, child runs, schedules); a version 1 database gets
#: its columns first (``_MIGRATE_1``), then this, which a new database gets as is.
SCHEMA_2 = """
CREATE INDEX IF NOT EXISTS flue_runs_ready ON flue_runs (ready_at, run_id) WHERE status = 'queued' AND owner IS NULL;
CREATE INDEX IF NOT EXISTS flue_runs_due ON flue_runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_parent ON flue_runs (parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_ended ON flue_runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_busy ON flue_runs (workflow) WHERE owner IS NOT NULL AND status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS flue_signals (
    run_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    signal_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    data      TEXT NOT NULL,
    key       TEXT,
    sent_at   TEXT NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS flue_signals_key ON flue_signals (run_id, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS flue_schedules (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    last_tick  TEXT
);
"""

_MIGRATE_1 = """
ALTER TABLE flue_runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE flue_runs ADD COLUMN wake_at TEXT;
ALTER TABLE flue_runs ADD COLUMN waiting_for TEXT;
ALTER TABLE flue_runs ADD COLUMN carrier TEXT;
ALTER TABLE flue_runs ADD COLUMN ready_at TEXT;
ALTER TABLE flue_runs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
UPDATE flue_runs SET ready_at = created_at WHERE status = 'queued';
"""

#: What version 3 added (recoveries, re-runs, steps in the order they were saved): the columns a
#: version 2 database lacks (``_MIGRATE_2``; its steps keep ``seq`` 0 and read in name order, before
#: any saved later), then this, which a new database gets as is.
SCHEMA_3 = """
CREATE INDEX IF NOT EXISTS flue_runs_rerun ON flue_runs (rerun_of, created_at, run_id) WHERE rerun_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_steps_order ON flue_steps (run_id, seq);
"""

_MIGRATE_2 = """
ALTER TABLE flue_runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flue_runs ADD COLUMN rerun_of TEXT;
ALTER TABLE flue_steps ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
"""

#: What version 4 added (flow control): the columns a version 3 database lacks (``_MIGRATE_3``), then
#: this, which a new database gets as is. The ready pool's index takes the priority first and carries
#: the keys, so a take skips the runs of a full bucket inside the index; the busy index counts per
#: concurrency key; the index of first starts counts a rate window; a pending debounce run not asked
#: to cancel is unique per key (racing admissions fold into one; a cancel frees the key).
SCHEMA_4 = """
DROP INDEX IF EXISTS flue_runs_ready;
DROP INDEX IF EXISTS flue_runs_busy;
CREATE INDEX IF NOT EXISTS flue_runs_pool ON flue_runs
    (priority DESC, ready_at, run_id, workflow, concurrency_key, rate_key, started_at)
    WHERE status = 'queued' AND owner IS NULL;
CREATE INDEX IF NOT EXISTS flue_runs_held ON flue_runs (workflow, concurrency_key)
    WHERE owner IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS flue_runs_started ON flue_runs (workflow, started_at, rate_key) WHERE started_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_concurrency_key ON flue_runs (concurrency_key, created_at, run_id)
    WHERE concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS flue_runs_rate_key ON flue_runs (rate_key, created_at, run_id) WHERE rate_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS flue_runs_debouncing ON flue_runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'scheduled' AND cancel_requested = 0;
"""

#: A version 4 file written before its pending-debounce index left out the runs asked to cancel gets
#: the index of today's version 4 (it indexes fewer runs than before: it cannot be violated).
_SETTLE_4 = """
DROP INDEX IF EXISTS flue_runs_debouncing;
CREATE UNIQUE INDEX flue_runs_debouncing ON flue_runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'scheduled' AND cancel_requested = 0;
"""

_MIGRATE_3 = """
ALTER TABLE flue_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flue_runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE flue_runs ADD COLUMN rate_key TEXT;
ALTER TABLE flue_runs ADD COLUMN debounce_key TEXT;
"""

#: How a database of an older version reaches the next: the columns it lacks, then what the next
#: version added.
_UPGRADES = {"1": (_MIGRATE_1, SCHEMA_2), "2": (_MIGRATE_2, SCHEMA_3), "3": (_MIGRATE_3, SCHEMA_4)}


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _settle_4(conn: sqlite3.Connection) -> None:
    """Bring the pending-debounce index of an early version 4 file to its current definition."""
    found = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'flue_runs_debouncing'"
    row = conn.execute(found).fetchone()
    if row is None or "cancel_requested" not in row[0]:
        _run_script(conn, _SETTLE_4)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database, upgrade one of an older version in place, or refuse
    one this code cannot read (``UnsupportedSchemaVersion``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()
        stored = None if row is None else row[0]
        if stored is None:
            for script in (SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4):
                _run_script(conn, script)
            conn.execute("INSERT INTO flue_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif stored in _UPGRADES:
            while stored in _UPGRADES:
                for script in _UPGRADES[stored]:
                    _run_script(conn, script)
                stored = str(int(stored) + 1)
            conn.execute("UPDATE flue_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        elif stored != str(SCHEMA_VERSION):
            newer = stored.isdigit() and int(stored) > SCHEMA_VERSION
            raise UnsupportedSchemaVersion(
                f"The database was written by {'a newer' if newer else 'an unrecognised'} version of Flue"
                f" (schema {stored!r}; this version reads {SCHEMA_VERSION}).",
                details={"stored_version": stored, "supported_version": SCHEMA_VERSION},
            )
        else:
            _settle_4(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

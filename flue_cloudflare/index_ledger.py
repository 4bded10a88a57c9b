"""What the index object stores: a copy of every run's record for listing and for the queries that
span runs (the ready pool, due wake-ups, runs of dead workers, runs to prune), idempotency keys, and
the registered workers.

The copies are kept consistent with the runs' own objects by versions: each run object sends its
row after every change of its record (from its outbox, so at least once, and before the operation
that changed it answers), and a row replaces the stored one only when its version is newer. An
admission may give the index its row itself, at the same time as it creates the run: a *provisional*
row (version 0), which the run's own first row replaces; one whose run never came to exist (its
admission died half-way) is found by the index object's sweep and removed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from flue_core.models import RunRecord
from flue_core.store import RunQuery, WorkerInfo
from flue_cloudflare import codec
from flue_cloudflare.sql import Sql

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    parent TEXT,
    rerun_of TEXT,
    ended_at TEXT,
    run_key TEXT,
    owner TEXT,
    ready_at TEXT,
    wake_at TEXT,
    cancel INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    concurrency_key TEXT,
    rate_key TEXT,
    debounce_key TEXT,
    started_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_newest ON runs (created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent, created_at, run_id) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_due ON runs (wake_at, run_id) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_held ON runs (workflow, owner) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS runs_provisional ON runs (created_at) WHERE version = 0;
CREATE TABLE IF NOT EXISTS run_keys (
    workflow TEXT NOT NULL,
    run_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    admission TEXT NOT NULL,
    PRIMARY KEY (workflow, run_key)
);
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, info TEXT NOT NULL);
"""

#: What an index stored before runs carried ``rerun_of`` lacks (its rows' ``rerun_of`` stays NULL,
#: which is right: none of those runs re-ran another).
MIGRATION = "ALTER TABLE runs ADD COLUMN rerun_of TEXT"
RERUN_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_rerun ON runs (rerun_of, created_at, run_id) WHERE rerun_of IS NOT NULL"
)
#: What an index stored before runs carried flow-control fields lacks: priority 0, no keys, and the
#: start time, taken from each row's record (the rate limits count starts).
FLOW_MIGRATION = (
    "ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    " ALTER TABLE runs ADD COLUMN concurrency_key TEXT; ALTER TABLE runs ADD COLUMN rate_key TEXT;"
    " ALTER TABLE runs ADD COLUMN debounce_key TEXT; ALTER TABLE runs ADD COLUMN started_at TEXT;"
    " UPDATE runs SET started_at = json_extract(record, '$.startedAt');"
    " DROP INDEX IF EXISTS runs_pool"
)
#: The indexes of the flow-control queries (:mod:`flue_cloudflare.index_pool`): the pool in the order
#: it is taken, the runs held per concurrency key, the starts per rate key.
FLOW_INDEXES = """
CREATE INDEX IF NOT EXISTS runs_pool_order ON runs (priority DESC, ready_at, run_id) WHERE ready_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_held_key ON runs (workflow, concurrency_key)
    WHERE status IN ('queued', 'running') AND owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_started ON runs (workflow, started_at) WHERE started_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_concurrency_key ON runs (concurrency_key, created_at, run_id)
    WHERE concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_pool_rate ON runs (workflow, rate_key)
    WHERE ready_at IS NOT NULL AND started_at IS NULL;
CREATE INDEX IF NOT EXISTS runs_rate_key ON runs (rate_key, created_at, run_id) WHERE rate_key IS NOT NULL;
"""

_COLUMNS = ("run_id", "version", "workflow", "status", "created_at", "parent", "rerun_of", "ended_at", "run_key",
            "owner", "ready_at", "wake_at", "cancel", "record", "priority", "concurrency_key", "rate_key",
            "debounce_key", "started_at")  # fmt: skip
_FIELDS = ("runId", "version", "workflow", "status", "createdAt", "parent", "rerunOf", "endedAt", "key", "owner",
           "readyAt", "wakeAt", "cancel", "record", "priority", "concurrencyKey", "rateKey", "debounceKey",
           "startedAt")  # fmt: skip
_CANCEL, _PRIORITY = _FIELDS.index("cancel"), _FIELDS.index("priority")
_UPSERT = (
    f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
    " ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
    + " WHERE excluded.version > runs.version"
)


class IndexLedger:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        sql.script(SCHEMA)
        if not sql.has_column("runs", "rerun_of"):
            sql.run(MIGRATION)
        sql.run(RERUN_INDEX)
        if not sql.has_column("runs", "priority"):
            sql.script(FLOW_MIGRATION)
        sql.script(FLOW_INDEXES)

    # -- copies of the runs -------------------------------------------------------------------------

    def upsert(self, row: dict[str, Any]) -> None:
        self.sql.run(_UPSERT, *self._values(row))

    def provisional(self, row: dict[str, Any]) -> None:
        """Store an admission's row as version 0, unless the run (or another under that id) has one."""
        values = self._values({**row, "version": 0})
        self.sql.run(
            f"INSERT OR IGNORE INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})", *values
        )

    def withdraw(self, run_id: str, record: str) -> None:
        """Remove an admission's provisional row (its run was not created)."""
        self.sql.run("DELETE FROM runs WHERE run_id = ? AND version = 0 AND record = ?", run_id, record)

    def provisional_before(self, created_before: str) -> list[str]:
        rows = self.sql.rows("SELECT run_id FROM runs WHERE version = 0 AND created_at < ? LIMIT 100", created_before)
        return [row["run_id"] for row in rows]

    def has_provisional(self) -> bool:
        return self.sql.one("SELECT 1 AS found FROM runs WHERE version = 0 LIMIT 1") is not None

    @staticmethod
    def _values(row: dict[str, Any]) -> list[Any]:
        # .get: a row queued in a run's outbox before a field existed lacks it (NULL is its default).
        values = [row.get(field) for field in _FIELDS]
        values[_CANCEL], values[_PRIORITY] = int(row["cancel"]), values[_PRIORITY] or 0
        return values

    def row(self, run_id: str) -> dict[str, Any] | None:
        return self.sql.one("SELECT * FROM runs WHERE run_id = ?", run_id)

    def remove(self, run_ids: Collection[str]) -> None:
        for run_id in run_ids:
            self.sql.run("DELETE FROM runs WHERE run_id = ?", run_id)
            self.sql.run("DELETE FROM run_keys WHERE run_id = ?", run_id)

    def list(self, query: RunQuery) -> list[RunRecord]:
        where, params = [], []
        status = None if query.status is None else query.status.value
        for column, value in (
            ("workflow", query.workflow), ("parent", query.parent), ("rerun_of", query.rerun_of), ("status", status),
            ("concurrency_key", query.concurrency_key), ("rate_key", query.rate_key),
        ):  # fmt: skip
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.started_after is not None:
            where.append("started_at > ?")
            params.append(codec.when(query.started_after))
        if query.after is not None:
            created, run_id = codec.when(query.after[0]), query.after[1]
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params += [created, created, run_id]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.sql.rows(
            f"SELECT record FROM runs {clause}ORDER BY created_at DESC, run_id DESC LIMIT ?", *params, query.limit
        )
        return [codec.record_of(row["record"]) for row in rows]

    def running(self, workflow: str, concurrency_key: str | None) -> int:
        """Running runs of ``workflow`` with ``concurrency_key`` (``None``: those without a key)."""
        return int(
            self.sql.value(
                "SELECT count(*) AS n FROM runs WHERE workflow = ? AND concurrency_key IS ? AND status = 'running'",
                workflow, concurrency_key,
            )
        )  # fmt: skip

    def due(self, now: str, limit: int) -> list[str]:
        rows = self.sql.rows("SELECT run_id FROM runs WHERE wake_at <= ? ORDER BY wake_at, run_id LIMIT ?", now, limit)
        return [row["run_id"] for row in rows]

    def next_wake(self) -> str | None:
        value = self.sql.value("SELECT min(wake_at) AS at FROM runs WHERE wake_at IS NOT NULL")
        return None if value is None else str(value)

    def ended_before(self, cutoff: str, limit: int) -> list[str]:
        """Runs that ended before ``cutoff``, oldest first, except the children of a parent that has
        not ended (it may still wait for their results; a parent's copy may only be behind, so one
        that says it ended is right)."""
        rows = self.sql.rows(
            "SELECT run_id FROM runs AS run WHERE ended_at < ? AND NOT EXISTS (SELECT 1 FROM runs AS parent"
            " WHERE parent.run_id = run.parent AND parent.status NOT IN ('completed', 'failed', 'cancelled'))"
            " ORDER BY ended_at LIMIT ?",
            cutoff, limit,
        )  # fmt: skip
        return [row["run_id"] for row in rows]

    # -- idempotency keys ---------------------------------------------------------------------------

    def bind_key(self, workflow: str, key: str, run_id: str, admission: str) -> tuple[str, str]:
        """Bind ``key`` of ``workflow`` to ``run_id`` unless it is bound; return the run it is bound
        to and that run's admission request."""
        self.sql.run(
            "INSERT OR IGNORE INTO run_keys (workflow, run_key, run_id, admission) VALUES (?, ?, ?, ?)",
            workflow, key, run_id, admission,
        )  # fmt: skip
        row = self.sql.one("SELECT run_id, admission FROM run_keys WHERE workflow = ? AND run_key = ?", workflow, key)
        assert row is not None
        return row["run_id"], row["admission"]

    def unbind_key(self, workflow: str, key: str, run_id: str) -> None:
        self.sql.run("DELETE FROM run_keys WHERE workflow = ? AND run_key = ? AND run_id = ?", workflow, key, run_id)

    # -- workers ------------------------------------------------------------------------------------

    def heartbeat(self, worker: WorkerInfo, running: Collection[str]) -> list[str]:
        self.sql.run(
            "INSERT OR REPLACE INTO workers (worker_id, info) VALUES (?, ?)",
            worker.worker_id, codec.dumps(codec.worker_wire(worker)),
        )  # fmt: skip
        stop = []
        for run_id in running:
            row = self.sql.one("SELECT owner, cancel FROM runs WHERE run_id = ?", run_id)
            if row is not None and (row["owner"] != worker.worker_id or row["cancel"]):
                stop.append(run_id)
        return stop

    def workers(self) -> list[WorkerInfo]:
        return [codec.worker_of(codec.loads(row["info"])) for row in self.sql.rows("SELECT info FROM workers")]

    def retire(self, worker_id: str) -> None:
        self.sql.run("DELETE FROM workers WHERE worker_id = ?", worker_id)

    def orphans(self, dead: Collection[str], workflows: Collection[str]) -> list[tuple[str, str]]:
        """Forget the ``dead`` workers; return ``(run_id, owner)`` of the ``queued`` or ``running``
        runs of ``workflows`` held by a worker that is not registered."""
        for worker_id in dead:
            self.retire(worker_id)
        names = list(workflows)
        if not names:
            return []
        rows = self.sql.rows(
            "SELECT run_id, owner FROM runs WHERE status IN ('queued', 'running') AND owner IS NOT NULL"
            f" AND workflow IN ({', '.join('?' for _ in names)})"
            " AND owner NOT IN (SELECT worker_id FROM workers) ORDER BY created_at, run_id",
            *names,
        )
        return [(row["run_id"], row["owner"]) for row in rows]

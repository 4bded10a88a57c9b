"""The SQLite store (the zero set-up default): one file, WAL, every commit durable.

All writes go through one writer that batches whatever is waiting into a single transaction, run in
one hop to aiosqlite's connection thread: sequential callers pay one commit each, concurrent callers
share commits, and a workflow's events never make it wait for the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from flue_core.errors import RunIdConflict, StoreUnavailable
from flue_core.models import RunError, RunRecord, RunStatus, format_timestamp, parse_timestamp, utc_now
from flue_core.snapshot import dumps
from flue_core.store import (
    Admission,
    Attempt,
    Capabilities,
    ChangeListener,
    EventPage,
    NewEvent,
    NewRun,
    Outcome,
    RunQuery,
    RunStore,
    StoredEvent,
    WorkerInfo,
    event_json,
)
from flue_node_like.sqlite_connection import connect, database_path, in_connection_thread, synchronous_mode
from flue_node_like.sqlite_writer import UNFINISHED, BatchWriter

_COLUMNS = (
    "run_id, workflow, status, input, key, attempt, created_at, started_at, ended_at, result, error, cancel_requested"
)


class SqliteStore(RunStore):
    """Runs in a SQLite file shared by every process on this host that opens it."""

    capabilities = Capabilities(durable=True, shared=True)

    def __init__(self, url: str | Path = "sqlite:///.flue/flue.db", *, synchronous: str = "FULL") -> None:
        self.path = database_path(url)
        self.synchronous = synchronous_mode(synchronous)
        self._db: aiosqlite.Connection | None = None
        self._writer: BatchWriter | None = None

    # -- connection and writer ----------------------------------------------------------------------

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        self._db = await connect(self.path, self.synchronous)
        self._writer = BatchWriter(self._db, self.path, on_change)

    async def close(self) -> None:
        if self._db is None:
            return
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                await writer.close()
        finally:  # the connection thread must end even if the writer's end was cut short
            db, self._db = self._db, None
            await db.close()

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._db is None:
            raise StoreUnavailable(f"The SQLite store {self.path} is closed.")
        return in_connection_thread(self._db, fn, *args)

    def _submit(self, apply: Callable[[sqlite3.Connection], Any], *run_ids: str) -> asyncio.Future[Any]:
        if self._writer is None:
            raise StoreUnavailable(f"The SQLite store {self.path} is closed.")
        return self._writer.submit(apply, *run_ids)

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        input_json = None if run.input is None else dumps(run.input)
        created_at = format_timestamp(run.created_at)
        first = event_json(run.run_id, run.first_event)

        def apply(conn: sqlite3.Connection) -> tuple | None:
            if run.key is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM flue_runs WHERE workflow = ? AND key = ?", (run.workflow, run.key)
                ).fetchone()
                if row is not None:
                    return row
            try:
                conn.execute(
                    "INSERT INTO flue_runs (run_id, workflow, status, input, key, created_at, owner)"
                    " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                    (run.run_id, run.workflow, input_json, run.key, created_at, run.owner),
                )
            except sqlite3.IntegrityError:  # the key was checked above: only the id can collide
                raise RunIdConflict(
                    f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id}
                ) from None
            conn.execute("INSERT INTO flue_events (run_id, idx, data) VALUES (?, 0, ?)", (run.run_id, first))
            return None

        existing = await self._submit(apply, run.run_id)
        if existing is not None:
            return Admission(_record(existing), created=False)
        record = RunRecord.model_construct(
            run_id=run.run_id,
            workflow=run.workflow,
            status=RunStatus.QUEUED,
            input=run.input,
            key=run.key,
            attempt=0,
            created_at=run.created_at,
            started_at=None,
            ended_at=None,
            result=None,
            error=None,
            cancel_requested=False,
        )
        return Admission(record, created=True)

    async def claim(self, run_id: str, owner: str) -> Attempt | None:
        now = format_timestamp(utc_now())

        def apply(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                "UPDATE flue_runs SET status = 'running', attempt = attempt + 1,"
                " started_at = COALESCE(started_at, ?)"
                " WHERE run_id = ? AND status = 'queued' AND owner = ?"
                f" RETURNING {_COLUMNS}, (SELECT MAX(idx) FROM flue_events WHERE run_id = flue_runs.run_id)",
                (now, run_id, owner),
            ).fetchone()

        row = await self._submit(apply, run_id)
        if row is None:
            return None
        tail = row[-1]
        return Attempt(_record(row[:-1]), (-1 if tail is None else tail) + 1)

    async def requeue(self, run_id: str, owner: str | None, *, held_by: str | None = None) -> RunRecord | None:
        def apply(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                "UPDATE flue_runs SET status = 'queued', owner = ?"
                " WHERE run_id = ? AND status = 'running' AND (?3 IS NULL OR owner = ?3)"
                f" RETURNING {_COLUMNS}",
                (owner, run_id, held_by),
            ).fetchone()

        row = await self._submit(apply, run_id)
        return None if row is None else _record(row)

    async def finish(
        self, run_id: str, outcome: Outcome, *, only_from: RunStatus | None = None, held_by: str | None = None
    ) -> RunRecord | None:
        result = None if outcome.result is None else dumps(outcome.result)
        error = None if outcome.error is None else outcome.error.model_dump_json(exclude_none=True)
        ended_at = format_timestamp(outcome.ended_at)

        allowed = [status for status in ("queued", "running") if only_from is None or status == only_from.value]

        def apply(conn: sqlite3.Connection) -> tuple | None:
            row = conn.execute(
                "UPDATE flue_runs SET status = ?, ended_at = ?, result = ?, error = ?"
                f" WHERE run_id = ? AND (? IS NULL OR owner = ?) AND status IN ({', '.join('?' * len(allowed))})"
                f" RETURNING {_COLUMNS}, (SELECT MAX(idx) FROM flue_events WHERE run_id = flue_runs.run_id)",
                (outcome.status.value, ended_at, result, error, run_id, held_by, held_by, *allowed),
            ).fetchone()
            if row is None:  # unknown, already ended, or not in ``only_from``: nothing changes
                return conn.execute(f"SELECT {_COLUMNS} FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
            *record, tail = row
            started_at = record[7]
            started = None if started_at is None else parse_timestamp(started_at)
            end = NewEvent((-1 if tail is None else tail) + 1, "run_end", outcome.event_data(started), outcome.ended_at)
            conn.execute(
                "INSERT INTO flue_events (run_id, idx, data) VALUES (?, ?, ?)", (run_id, end.index, event_json(run_id, end))
            )
            return tuple(record)

        row = await self._submit(apply, run_id)
        return None if row is None else _record(row)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        def apply(conn: sqlite3.Connection) -> tuple | None:
            conn.execute(
                f"UPDATE flue_runs SET cancel_requested = 1 WHERE run_id = ? AND status IN {UNFINISHED}", (run_id,)
            )
            return conn.execute(f"SELECT {_COLUMNS} FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()

        row = await self._submit(apply, run_id)
        return None if row is None else _record(row)

    # -- events -------------------------------------------------------------------------------------

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        if self._writer is not None:
            self._writer.append(run_id, [(run_id, event.index, event_json(run_id, event)) for event in events])

    async def flush(self) -> None:
        if self._writer is not None and self._writer.accepting:
            await self._writer.submit(lambda conn: None)

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        def query(conn: sqlite3.Connection) -> EventPage | None:
            row = conn.execute("SELECT status FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            (tail,) = conn.execute("SELECT MAX(idx) FROM flue_events WHERE run_id = ?", (run_id,)).fetchone()
            tail = -1 if tail is None else tail
            start = tail if after is None else after
            rows = conn.execute(
                "SELECT idx, data FROM flue_events WHERE run_id = ? AND idx > ? ORDER BY idx LIMIT ?",
                (run_id, start, max(limit, 0)),
            ).fetchall()
            return EventPage([StoredEvent(idx, data) for idx, data in rows], tail, row[0] not in ("queued", "running"))

        return await self._in_thread(query)

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        def query(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(f"SELECT {_COLUMNS} FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()

        row = await self._in_thread(query)
        return None if row is None else _record(row)

    async def list(self, query: RunQuery) -> list[RunRecord]:
        where, params = [], []
        if query.workflow is not None:
            where.append("workflow = ?")
            params.append(query.workflow)
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status.value)
        if query.after is not None:
            where.append("(created_at, run_id) < (?, ?)")
            params.extend((format_timestamp(query.after[0]), query.after[1]))
        sql = f"SELECT {_COLUMNS} FROM flue_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        params.append(query.limit)

        def run(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(sql, params).fetchall()

        return [_record(row) for row in await self._in_thread(run)]

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO flue_steps (run_id, name, value) VALUES (?, ?, ?)", (run_id, name, value))

        await self._submit(apply)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        def query(conn: sqlite3.Connection) -> dict[str, str]:
            return dict(conn.execute("SELECT name, value FROM flue_steps WHERE run_id = ?", (run_id,)).fetchall())

        return await self._in_thread(query)

    # -- workers ------------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        running = list(running)

        def apply(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "INSERT INTO flue_workers (worker_id, host, pid, pid_started, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (worker.worker_id, worker.host, worker.pid, worker.pid_started, worker.heartbeat_at),
            )
            if not running:
                return []
            marks = ", ".join("?" * len(running))
            rows = conn.execute(
                f"SELECT run_id FROM flue_runs WHERE run_id IN ({marks})"
                " AND (owner IS NOT ? OR cancel_requested = 1)",
                (*running, worker.worker_id),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._submit(apply)

    async def workers(self) -> list[WorkerInfo]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute("SELECT worker_id, host, pid, pid_started, heartbeat_at FROM flue_workers").fetchall()

        return [WorkerInfo(*row) for row in await self._in_thread(query)]

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        dead, workflows = list(dead), list(workflows)

        def apply(conn: sqlite3.Connection) -> list[tuple]:
            conn.executemany("DELETE FROM flue_workers WHERE worker_id = ?", [(w,) for w in dead])
            if not workflows:
                return []
            marks = ", ".join("?" * len(workflows))
            # ``+workflow`` keeps the planner off the workflow index, which would scan every run of
            # the workflow ever stored: the status index finds the unfinished ones only.
            return conn.execute(
                f"UPDATE flue_runs SET owner = ? WHERE status IN {UNFINISHED} AND +workflow IN ({marks})"
                " AND (owner IS NULL OR owner NOT IN (SELECT worker_id FROM flue_workers))"
                f" RETURNING {_COLUMNS}",
                (owner, *workflows),
            ).fetchall()

        rows = await self._submit(apply)
        records = sorted((_record(row) for row in rows), key=lambda r: (r.created_at, r.run_id))
        if records:
            self._on_change(r.run_id for r in records)
        return records

    async def retire(self, worker_id: str) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM flue_workers WHERE worker_id = ?", (worker_id,))

        await self._submit(apply)


def _record(row: tuple) -> RunRecord:
    """A record from a row this store wrote (trusted: built without re-validation)."""
    (run_id, workflow, status, input_, key, attempt, created, started, ended, result, error, cancel) = row
    return RunRecord.model_construct(
        run_id=run_id,
        workflow=workflow,
        status=RunStatus(status),
        input=None if input_ is None else json.loads(input_),
        key=key,
        attempt=attempt,
        created_at=parse_timestamp(created),
        started_at=None if started is None else parse_timestamp(started),
        ended_at=None if ended is None else parse_timestamp(ended),
        result=None if result is None else json.loads(result),
        error=None if error is None else RunError.model_validate_json(error),
        cancel_requested=bool(cancel),
    )

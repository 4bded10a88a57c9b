"""The SQLite store (the zero set-up default): one file, WAL, every commit durable.

All writes go through one writer that batches whatever is waiting into a single transaction, run in
one hop to aiosqlite's connection thread: sequential callers pay one commit each, concurrent callers
share commits, and a workflow's events never make it wait for the disk. Processes sharing the file
hear of each other's writes through SQLite's ``data_version`` (see :class:`~flue_node_like.sqlite_watch.DataVersionWatch`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from flue_core.errors import RunIdConflict, StoreUnavailable
from flue_core.flow.limits import Limits, Taken
from flue_core.models import RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp, parse_timestamp, utc_now
from flue_core.snapshot import dumps
from flue_core.store import (
    CANCELS,
    READY,
    SCHEDULES,
    Admission,
    Attempt,
    Capabilities,
    ChangeListener,
    Delivery,
    EventPage,
    NewEvent,
    NewRun,
    NewSignal,
    Outcome,
    RunQuery,
    RunStore,
    SignalSent,
    StoredEvent,
    Suspended,
    Suspension,
    WorkerInfo,
    event_json,
)
from flue_node_like import sqlite_flow, sqlite_waits
from flue_node_like.sqlite_connection import connect, database_path, in_connection_thread, synchronous_mode
from flue_node_like.sqlite_rows import (
    COLUMNS,
    FINISHED,
    SAVE_STEP,
    announce_signals,
    record,
    schedule_of,
    schedule_row,
    select_record,
)
from flue_node_like.sqlite_watch import DataVersionWatch
from flue_node_like.sqlite_writer import UNFINISHED, BatchWriter


_UNFINISHED = [status.value for status in RunStatus if not status.finished]

#: Runs that ended before the cutoff, except the children of a parent that has not ended (it may still
#: wait for their results). Through the index of end times: the one of statuses would visit every
#: finished run to find the few old ones.
_PRUNABLE = (
    "SELECT run_id FROM flue_runs AS run INDEXED BY flue_runs_ended WHERE ended_at IS NOT NULL AND ended_at < ?"
    f" AND status IN {FINISHED} AND NOT EXISTS (SELECT 1 FROM flue_runs AS parent"
    f" WHERE parent.run_id = run.parent_run_id AND parent.status IN {UNFINISHED}) LIMIT ?"
)


class SqliteStore(RunStore):
    """Runs in a SQLite file shared by every process on this host that opens it."""

    capabilities = Capabilities(durable=True, shared=True, feed=True, claims_on_admit=True)  # feed: data_version

    def __init__(self, url: str | Path = "sqlite:///.flue/flue.db", *, synchronous: str = "FULL") -> None:
        self.path = database_path(url)
        self.synchronous = synchronous_mode(synchronous)
        self._db: aiosqlite.Connection | None = None
        self._writer: BatchWriter | None = None
        self._watch: DataVersionWatch | None = None

    # -- connection and writer ----------------------------------------------------------------------

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        self._db = await connect(self.path, self.synchronous)
        self._writer = BatchWriter(self._db, self.path, on_change)
        self._watch = DataVersionWatch(self._db, on_change)

    async def close(self) -> None:
        if self._db is None:
            return
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.close()
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

    def _submit(self, apply: Callable[[sqlite3.Connection], Any], *run_ids: str, touched: set[str] | None = None) -> asyncio.Future[Any]:
        if self._writer is None:
            raise StoreUnavailable(f"The SQLite store {self.path} is closed.")
        return self._writer.submit(apply, touched if touched is not None else run_ids)

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        admission, _ = await self._admit(run, claim=False)
        return admission

    async def admit_claimed(self, run: NewRun) -> tuple[Admission, Attempt | None]:
        # One INSERT of the run as claim() would leave it, in the admission's own transaction.
        return await self._admit(run, claim=run.owner is not None and not run.scheduled)

    async def _admit(self, run: NewRun, *, claim: bool) -> tuple[Admission, Attempt | None]:
        input_json = None if run.input is None else dumps(run.input)
        created_at = format_timestamp(run.created_at)
        first = event_json(run.run_id, run.first_event)
        scheduled = run.scheduled
        status = RunStatus.SCHEDULED if scheduled else RunStatus.QUEUED
        owner = None if scheduled else run.owner
        wake_at = format_timestamp(run.start_at) if scheduled and run.start_at is not None else None
        waiting_for = WaitingFor(kind="debounce" if run.debounce_key is not None else "start") if scheduled else None
        carrier = None if run.carrier is None else dumps(run.carrier)
        touched = {run.run_id, READY} if owner is None else {run.run_id}
        started_at = utc_now() if claim else None
        stored_status = RunStatus.RUNNING if claim else status

        def apply(conn: sqlite3.Connection) -> tuple | None:
            if run.key is not None:
                row = conn.execute(
                    f"SELECT {COLUMNS} FROM flue_runs WHERE workflow = ? AND key = ?", (run.workflow, run.key)
                ).fetchone()
                if row is not None:
                    return row
            if run.debounce_key is not None and scheduled:
                row = sqlite_flow.fold_debounced(conn, run, input_json)
                if row is not None:
                    touched.add(row[0])
                    return row
            try:
                conn.execute(
                    "INSERT INTO flue_runs (run_id, workflow, status, input, key, created_at, owner, parent_run_id,"
                    " wake_at, waiting_for, carrier, ready_at, attempt, started_at, rerun_of, priority,"
                    " concurrency_key, rate_key, debounce_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.workflow,
                        stored_status.value,
                        input_json,
                        run.key,
                        created_at,
                        owner,
                        run.parent_run_id,
                        wake_at,
                        None if waiting_for is None else waiting_for.model_dump_json(exclude_none=True),
                        carrier,
                        created_at,
                        1 if claim else 0,
                        None if started_at is None else format_timestamp(started_at),
                        run.rerun_of,
                        run.priority,
                        run.concurrency_key,
                        run.rate_key,
                        run.debounce_key,
                    ),
                )
            except sqlite3.IntegrityError:  # the key was checked above: only the id can collide
                raise RunIdConflict(
                    f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id}
                ) from None
            conn.execute("INSERT INTO flue_events (run_id, idx, data) VALUES (?, 0, ?)", (run.run_id, first))
            if run.steps:  # a new run has no steps yet: the taken-over ones are numbered from 1, in order
                conn.executemany(
                    "INSERT OR IGNORE INTO flue_steps (run_id, name, value, seq) VALUES (?, ?, ?, ?)",
                    [(run.run_id, name, value, seq) for seq, (name, value) in enumerate(run.steps, 1)],
                )
            return None

        existing = await self._submit(apply, touched=touched)
        if existing is not None:
            return Admission(record(existing), created=False), None
        created = RunRecord.trusted(
            run_id=run.run_id,
            workflow=run.workflow,
            status=status,
            input=run.input,
            key=run.key,
            attempt=0,
            created_at=run.created_at,
            started_at=None,
            ended_at=None,
            result=None,
            error=None,
            cancel_requested=False,
            parent_run_id=run.parent_run_id,
            wake_at=run.start_at if scheduled else None,
            waiting_for=waiting_for,
            carrier=run.carrier,
            recoveries=0,
            rerun_of=run.rerun_of,
            priority=run.priority,
            concurrency_key=run.concurrency_key,
            rate_key=run.rate_key,
            debounce_key=run.debounce_key,
            queued_for=None,  # told by the runtime when the run is read
        )
        if not claim:
            return Admission(created, created=True), None
        running = created.model_copy(update={"status": RunStatus.RUNNING, "attempt": 1, "started_at": started_at})
        return Admission(created, created=True), Attempt(running, 1)

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        now = format_timestamp(utc_now())
        touched = {run_id}

        def apply(conn: sqlite3.Connection) -> tuple | None:
            if limit is not None:
                row = conn.execute(
                    "SELECT workflow, concurrency_key FROM flue_runs WHERE run_id = ? AND status = 'queued' AND owner = ?",
                    (run_id, owner),
                ).fetchone()
                if row is None:
                    return None
                # Over the limit of its key: back to the pool, in its place; a worker takes it once there is room.
                if sqlite_flow.running_in_bucket(conn, *row) >= limit:
                    conn.execute("UPDATE flue_runs SET owner = NULL WHERE run_id = ?", (run_id,))
                    touched.add(READY)
                    return None
            # ``resume`` stays as it is: it tells this claim, and the RETURNING below, whether the
            # run continues its attempt; suspend and requeue set it anew.
            return conn.execute(
                "UPDATE flue_runs SET status = 'running', attempt = attempt + 1 - resume,"
                " started_at = COALESCE(started_at, ?)"
                " WHERE run_id = ? AND status = 'queued' AND owner = ?"
                f" RETURNING {COLUMNS}, resume, (SELECT MAX(idx) FROM flue_events WHERE run_id = flue_runs.run_id)",
                (now, run_id, owner),
            ).fetchone()

        row = await self._submit(apply, touched=touched)
        if row is None:
            return None
        *columns, resume, tail = row
        return Attempt(record(tuple(columns)), (-1 if tail is None else tail) + 1, bool(resume))

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        now = utc_now()
        touched = {run_id} if owner is not None else {run_id, READY}

        def apply(conn: sqlite3.Connection) -> tuple | None:
            # An interruption is not an attempt: the next claim continues this one (``resume``).
            row = conn.execute(
                "UPDATE flue_runs SET status = 'queued', owner = ?1, ready_at = ?2,"
                " resume = ?5, recoveries = recoveries + ?5"
                " WHERE run_id = ?3 AND status = 'running' AND (?4 IS NULL OR owner = ?4)"
                f" RETURNING {COLUMNS}",
                (owner, format_timestamp(now), run_id, held_by, int(interrupted)),
            ).fetchone()
            if row is not None:
                announce_signals(conn, run_id, now)
            return row

        row = await self._submit(apply, touched=touched)
        return None if row is None else record(row)

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        touched = {run_id}
        now = utc_now()
        return await self._submit(lambda conn: sqlite_waits.suspend(conn, run_id, owner, suspension, now, touched), touched=touched)

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        result = None if outcome.result is None else dumps(outcome.result)
        error = None if outcome.error is None else outcome.error.model_dump_json(exclude_none=True)
        ended_at = format_timestamp(outcome.ended_at)
        allowed = _UNFINISHED if only_from is None else [s.value for s in only_from if not s.finished]
        touched = {run_id}

        def apply(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT owner FROM flue_runs WHERE run_id = ? AND status IN ({', '.join('?' * len(allowed))})",
                (run_id, *allowed),
            ).fetchone()
            if row is None or (held_by is not None and row[0] != held_by):  # unknown, ended, or not ours
                current = select_record(conn, run_id)
                return None if current is None else record(current)
            announce_signals(conn, run_id, outcome.ended_at)
            updated = conn.execute(
                "UPDATE flue_runs SET status = ?, ended_at = ?, result = ?, error = ?, wake_at = NULL, waiting_for = NULL"
                f" WHERE run_id = ? RETURNING {COLUMNS}, (SELECT MAX(idx) FROM flue_events WHERE run_id = flue_runs.run_id)",
                (outcome.status.value, ended_at, result, error, run_id),
            ).fetchone()
            *columns, tail = updated
            final = record(tuple(columns))
            end = NewEvent((-1 if tail is None else tail) + 1, "run_end", outcome.event_data(final.started_at), outcome.ended_at)
            conn.execute(
                "INSERT INTO flue_events (run_id, idx, data) VALUES (?, ?, ?)", (run_id, end.index, event_json(run_id, end))
            )
            sqlite_waits.wake_parent(conn, final, ended_at, touched)
            return final  # built once, here, where the run_end event needed it

        return await self._submit(apply, touched=touched)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        def apply(conn: sqlite3.Connection) -> tuple | None:
            conn.execute(
                f"UPDATE flue_runs SET cancel_requested = 1 WHERE run_id = ? AND status IN {UNFINISHED}", (run_id,)
            )
            return select_record(conn, run_id)

        row = await self._submit(apply, run_id, CANCELS)
        return None if row is None else record(row)

    # -- the ready pool and the due-time index ------------------------------------------------------

    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        def apply(conn: sqlite3.Connection) -> tuple[list[tuple], datetime | None]:
            return sqlite_flow.take_ready(conn, owner, workflows, limit, only, utc_now())  # now: when it counts

        rows, retry_at = await self._submit(apply)
        return Taken([record(row) for row in rows], retry_at)

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        touched: set[str] = set()
        moment = format_timestamp(now)
        return await self._submit(lambda conn: sqlite_waits.wake_due(conn, moment, limit, touched), touched=touched)

    async def next_wake(self) -> datetime | None:
        def query(conn: sqlite3.Connection) -> str | None:
            return conn.execute("SELECT MIN(wake_at) FROM flue_runs WHERE wake_at IS NOT NULL").fetchone()[0]

        found = await self._in_thread(query)
        return None if found is None else parse_timestamp(found)

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
            return EventPage([StoredEvent(idx, data) for idx, data in rows], tail, RunStatus(row[0]).finished)

        return await self._in_thread(query)

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        row = await self._in_thread(select_record, run_id)
        return None if row is None else record(row)

    async def list(self, query: RunQuery) -> list[RunRecord]:
        started_after = None if query.started_after is None else format_timestamp(query.started_after)
        where, params = [], []
        for condition, value in (
            ("workflow = ?", query.workflow),
            ("status = ?", None if query.status is None else query.status.value),
            ("parent_run_id = ?", query.parent),
            ("rerun_of = ?", query.rerun_of),
            ("concurrency_key = ?", query.concurrency_key),
            ("rate_key = ?", query.rate_key),
            ("started_at > ?", started_after),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        if query.after is not None:
            where.append("(created_at, run_id) < (?, ?)")
            params.extend((format_timestamp(query.after[0]), query.after[1]))
        sql = f"SELECT {COLUMNS} FROM flue_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        params.append(query.limit)

        def run(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(sql, params).fetchall()

        return [record(row) for row in await self._in_thread(run)]

    async def count_runs(
        self, workflows: Collection[str], statuses: Collection[RunStatus], limit: int
    ) -> dict[tuple[str, RunStatus], int]:
        names = list(workflows)
        if not names:
            return {}
        marks = ", ".join("?" * len(names))

        def query(conn: sqlite3.Connection) -> dict[tuple[str, RunStatus], int]:
            counts: dict[tuple[str, RunStatus], int] = {}
            for status in statuses:  # in the connection thread: the event loop goes on meanwhile
                rows = conn.execute(
                    "SELECT workflow, COUNT(*) FROM (SELECT workflow FROM flue_runs WHERE status = ?"
                    f" AND workflow IN ({marks}) LIMIT ?) GROUP BY workflow",
                    (status.value, *names, limit),
                ).fetchall()
                counts.update(((workflow, status), n) for workflow, n in rows)
            return counts

        return await self._in_thread(query)

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        cutoff = format_timestamp(ended_before)

        def apply(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in conn.execute(_PRUNABLE, (cutoff, limit))]
            for table in ("flue_events", "flue_steps", "flue_signals", "flue_runs"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(run_id,) for run_id in ids])
            return len(ids)

        return await self._submit(apply)

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute(SAVE_STEP, (run_id, name, value))

        await self._submit(apply)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        def query(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute("SELECT name, value FROM flue_steps WHERE run_id = ? ORDER BY seq, name", (run_id,))
            return dict(rows.fetchall())

        return await self._in_thread(query)

    # -- signals ------------------------------------------------------------------------------------

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        touched = {run_id}
        return await self._submit(lambda conn: sqlite_waits.send_signal(conn, run_id, signal, touched), touched=touched)

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        now = utc_now()
        return await self._submit(
            lambda conn: sqlite_waits.take_signal(conn, run_id, owner, name, step, now, sent_by), run_id
        )

    # -- schedules ----------------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        def apply(conn: sqlite3.Connection) -> tuple[Schedule, bool]:
            existing = conn.execute(
                "SELECT name, definition, last_tick FROM flue_schedules WHERE name = ?", (schedule.name,)
            ).fetchone()
            if existing is not None:
                kept = schedule_of(existing)
                if not replace:
                    return kept, False
                stored = schedule.model_copy(update={"created_at": kept.created_at, "last_tick": kept.last_tick})
                name, definition, _ = schedule_row(stored)
                conn.execute("UPDATE flue_schedules SET definition = ? WHERE name = ?", (definition, name))
                return stored, False
            conn.execute("INSERT INTO flue_schedules (name, definition, last_tick) VALUES (?, ?, ?)", schedule_row(schedule))
            return schedule, True

        return await self._submit(apply, SCHEDULES)

    async def get_schedule(self, name: str) -> Schedule | None:
        def query(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute("SELECT name, definition, last_tick FROM flue_schedules WHERE name = ?", (name,)).fetchone()

        row = await self._in_thread(query)
        return None if row is None else schedule_of(row)

    async def list_schedules(self) -> list[Schedule]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute("SELECT name, definition, last_tick FROM flue_schedules ORDER BY name").fetchall()

        return [schedule_of(row) for row in await self._in_thread(query)]

    async def delete_schedule(self, name: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM flue_schedules WHERE name = ?", (name,)).rowcount > 0

        return await self._submit(apply, SCHEDULES)

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        before = None if previous is None else format_timestamp(previous)

        def apply(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE flue_schedules SET last_tick = ? WHERE name = ? AND last_tick IS ?",
                (format_timestamp(tick), name, before),
            )
            return cursor.rowcount > 0

        return await self._submit(apply)

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
            # the workflow ever stored: the status index finds the held ones only.
            return conn.execute(
                f"UPDATE flue_runs SET owner = ? WHERE status IN ('queued', 'running') AND +workflow IN ({marks})"
                " AND owner IS NOT NULL AND owner NOT IN (SELECT worker_id FROM flue_workers)"
                f" RETURNING {COLUMNS}",
                (owner, *workflows),
            ).fetchall()

        rows = await self._submit(apply)
        records = sorted((record(row) for row in rows), key=lambda r: (r.created_at, r.run_id))
        if records:
            self._on_change(r.run_id for r in records)
        return records

    async def retire(self, worker_id: str) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM flue_workers WHERE worker_id = ?", (worker_id,))

        await self._submit(apply)

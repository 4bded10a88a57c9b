"""The Postgres run store: runs shared by every process on every host that opens the same URL.

Writes go through one ordered connection per process (:class:`~flue_postgres.writer.Writer`), in
batches: each batch is one call of ``apply()`` (``sql/runs.sql``), so every operation is atomic across
processes and a batch of concurrent callers costs one commit. Admission writes the record, the stream
and its first event, the idempotency key and the run's place in the ready pool or the due-time index
in that one transaction; the ready pool is taken from with ``FOR UPDATE SKIP LOCKED``; a run's writes
are fenced by its owner. Reads go through a few other connections. Other processes' changes arrive
by ``LISTEN`` (:class:`~flue_postgres.feed.Feed`), announced by ``NOTIFY`` in the writing transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flue_core.errors import RunFinished, RunIdConflict, RunNotFound, StoreUnavailable
from flue_core.models import RunRecord, RunStatus, Schedule, format_timestamp, utc_now
from flue_core.store import (
    Admission,
    Attempt,
    Capabilities,
    ChangeListener,
    Limits,
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
    Taken,
    Suspended,
    Suspension,
    WorkerInfo,
    delivered_step_value,
    event_json,
    signal_received_data,
)
from flue_postgres.connection import Readers, connect, translate
from flue_postgres.feed import Feed
from flue_postgres.flow import debounced_data, limits_of, taken_of
from flue_postgres.rows import (
    DURATION_TAIL,
    dumps,
    encodable,
    record_of,
    schedule_definition,
    schedule_of,
    text_in,
    text_out,
    timestamp,
)
from flue_postgres.schema import FUNCTION_PREFIX, RECORD_COLUMNS, check_schema, ensure_schema
from flue_postgres.settings import PostgresSettings
from flue_postgres.writer import Writer

log = logging.getLogger("flue.postgres")

__all__ = ["PostgresStore"]

#: Finished runs removed by one call of the retention sweep.
PRUNE_BATCH = 1000
#: Seconds between two sweeps (retention, and the remembered answers of operations).
SWEEP_INTERVAL = 60.0
#: How long answers of operations are remembered for a call sent again (far beyond any ``timeout``).
OPS_KEPT = "10 minutes"


class PostgresStore(RunStore):
    """Runs in Postgres, in the URL's schema (:mod:`flue_postgres.settings` documents the URL).
    ``feed_heartbeat``: seconds of silence after which the change feed's connection is probed."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True, feed=True, claims_on_admit=True)

    def __init__(self, url: str = "postgres://localhost/flue", *, feed_heartbeat: float = 5.0) -> None:
        self.settings = PostgresSettings.from_url(url)
        self.url = self.settings.url
        self.retention = self.settings.retention
        self.feed_heartbeat = feed_heartbeat
        self._schema = f'"{self.settings.schema}"'
        self._origin = uuid.uuid4().hex[:16]
        self._on_change: ChangeListener = lambda keys: None
        self._writer: Writer | None = None
        self._readers: Readers | None = None
        self.feed: Feed | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # -- connection ---------------------------------------------------------------------------------

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        conn = await connect(self.settings, purpose="writer")
        writer = Writer(self.settings, self._origin, on_change)
        feed = Feed(self.settings, self.settings.channel, self._origin, heartbeat=self.feed_heartbeat)
        try:
            await ensure_schema(conn, self.settings)
            await feed.start(on_change)
            await writer.open(conn)
        except BaseException as exc:
            await feed.stop()
            conn.terminate()
            if isinstance(exc, Exception):
                raise translate(exc, self.settings) from None
            raise
        self._writer, self.feed = writer, feed
        self._readers = Readers(self.settings, "reader")
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="flue-postgres-sweep")

    async def open_for_reading(self) -> None:
        """Open for reads only (a replay check, an export of histories): nothing is created, upgraded
        or written — no schema, no worker, no sweep, and the server refuses writes on these
        connections. A schema without Flue's tables is a ``ConfigurationError``."""
        conn = await connect(self.settings, purpose="history", read_only=True)
        try:
            await check_schema(conn, self.settings)
        except Exception as exc:
            raise translate(exc, self.settings) from None
        finally:
            conn.terminate()
        self._readers = Readers(self.settings, "history", read_only=True)

    async def close(self) -> None:
        readers, self._readers = self._readers, None
        if readers is not None:
            await readers.close()
        writer = self._writer
        if writer is None:
            return
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(BaseException):
                await sweeper
        self._writer = None
        await writer.close()
        feed, self.feed = self.feed, None
        if feed is not None:
            await feed.stop()

    def _write(self, name: str, *args: Any, remembered: bool = True) -> asyncio.Future[Any]:
        writer = self._writer
        if writer is None:
            raise StoreUnavailable(f"The Postgres store {self.url} is closed.")
        return writer.submit([name, writer.opid() if remembered else "", *args])

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        readers = self._readers
        if readers is None:
            raise StoreUnavailable(f"The Postgres store {self.url} is closed.")
        return await readers.run(lambda conn: conn.fetch(sql.replace("@S@", self._schema), *args))

    async def _value(self, sql: str, *args: Any) -> Any:
        readers = self._readers
        if readers is None:
            raise StoreUnavailable(f"The Postgres store {self.url} is closed.")
        return await readers.run(lambda conn: conn.fetchval(sql.replace("@S@", self._schema), *args))

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        admission, _ = await self._admit(run, claim=False)
        return admission

    async def admit_claimed(self, run: NewRun) -> tuple[Admission, Attempt | None]:
        # One insert of the run as claim() would leave it, in the admission's own transaction.
        return await self._admit(run, claim=run.owner is not None and not run.scheduled)

    async def _admit(self, run: NewRun, *, claim: bool) -> tuple[Admission, Attempt | None]:
        created = run.record()
        scheduled, waiting_for = run.scheduled, created.waiting_for
        started_at = utc_now() if claim else None
        answer = await self._write(
            "admit",
            run.run_id,
            run.workflow,
            text_in(run.key),
            None if run.input is None else dumps(run.input),
            format_timestamp(run.created_at),
            run.owner,
            run.parent_run_id,
            timestamp(run.start_at) if scheduled else None,
            None if waiting_for is None else waiting_for.model_dump_json(exclude_none=True),
            None if run.carrier is None else dumps(run.carrier),
            event_json(run.run_id, run.first_event),
            run.rerun_of,
            [[text_in(name), value] for name, value in run.steps],
            claim,
            timestamp(started_at),
            run.priority,
            text_in(run.concurrency_key),
            text_in(run.rate_key),
            text_in(run.debounce_key),
            debounced_data(run),
        )
        if isinstance(answer, dict):
            raise RunIdConflict(f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id})
        if answer[0] == "old":
            return Admission(record_of(answer[1]), created=False), None
        if not claim:
            return Admission(created, created=True), None
        running = created.model_copy(update={"status": RunStatus.RUNNING, "attempt": 1, "started_at": started_at})
        return Admission(created, created=True), Attempt(running, 1)

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        answer = await self._write("claim", run_id, owner, limit, format_timestamp(utc_now()))
        if answer is None:
            return None
        return Attempt(record_of(answer[0]), answer[1], answer[2])

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        answer = await self._write("requeue", run_id, owner, held_by, interrupted, format_timestamp(utc_now()))
        return None if answer is None else record_of(answer)

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        waiting_for = suspension.waiting_for
        answer = await self._write(
            "suspend",
            run_id,
            owner,
            waiting_for.model_dump_json(exclude_none=True),
            waiting_for.kind,
            waiting_for.name,
            list(waiting_for.run_ids or ()),
            timestamp(suspension.wake_at),
            format_timestamp(utc_now()),
            dumps(suspension.event_data()),
        )
        if answer is None:
            return None
        return Suspended(answer[0], answer[1], record_of(answer[2]))

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        end_data = dumps(outcome.event_data(None))
        if not end_data.endswith(DURATION_TAIL):
            raise AssertionError(f"unexpected run_end data: {end_data}")
        answer = await self._write(
            "finish",
            run_id,
            outcome.status.value,
            format_timestamp(outcome.ended_at),
            None if outcome.result is None else dumps(outcome.result),
            None if outcome.error is None else outcome.error.model_dump_json(exclude_none=True),
            None if only_from is None else [status.value for status in only_from],
            held_by,
            format_timestamp(utc_now()),
            end_data[: -len("null}")],
            remembered=False,
        )
        return None if answer is None else record_of(answer)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        answer = await self._write("cancel", run_id, remembered=False)
        return None if answer is None else record_of(answer)

    # -- the ready pool and the due-time index ------------------------------------------------------

    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        if limit <= 0 or not workflows or (only is not None and not only):
            return Taken()
        answer = await self._write(
            "take", owner, limit, limits_of(workflows), None if only is None else list(only), format_timestamp(utc_now())
        )
        return taken_of(answer)

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        return await self._write("wake", format_timestamp(now), limit, remembered=False)

    async def next_wake(self) -> datetime | None:
        return await self._value("SELECT min(wake_at) FROM @S@.runs WHERE wake_at IS NOT NULL")

    # -- events -------------------------------------------------------------------------------------

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        if self._writer is None or not events:
            return
        written = [(event.index, text) for event in events if encodable(text := event_json(run_id, event))]
        if len(written) < len(events):
            log.warning("flue: dropped an event of run %s that is not valid Unicode", run_id)
        if written:
            self._writer.append(run_id, written)

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer.flush()

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        rows = await self._read(
            "SELECT r.status, r.next_index, e.idx, e.data FROM @S@.runs r LEFT JOIN LATERAL ("
            "  SELECT idx, data FROM @S@.events WHERE run_id = r.run_id AND idx > COALESCE($2, r.next_index - 1)"
            "  ORDER BY idx LIMIT $3) e ON true WHERE r.run_id = $1",
            run_id,
            after,
            max(limit, 0),
        )
        if not rows:
            return None
        status, next_index = rows[0][0], rows[0][1]
        events = [StoredEvent(row[2], row[3]) for row in rows if row[2] is not None]
        return EventPage(events, next_index - 1, status in _FINISHED)

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        rows = await self._read(f"SELECT {_RECORD} FROM @S@.runs WHERE run_id = $1", run_id)
        return record_of(rows[0]) if rows else None

    async def list(self, query: RunQuery) -> list[RunRecord]:
        where, args = [], []
        for condition, value in (
            ("workflow =", query.workflow),
            ("status =", None if query.status is None else query.status.value),
            ("parent_run_id =", query.parent),
            ("rerun_of =", query.rerun_of),
            ("concurrency_key =", text_in(query.concurrency_key)),
            ("rate_key =", text_in(query.rate_key)),
            ("started_at >", query.started_after),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{condition} ${len(args)}")
        if query.after is not None:
            args += [query.after[0], query.after[1]]
            where.append(f"(created_at, run_id) < (${len(args) - 1}, ${len(args)})")
        args.append(query.limit)
        sql = (
            f"SELECT {_RECORD} FROM @S@.runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY created_at DESC, run_id DESC LIMIT ${len(args)}"
        )
        return [record_of(row) for row in await self._read(sql, *args)]

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        return await self._value(f"SELECT @S@.{FUNCTION_PREFIX}prune($1, $2)", ended_before, limit)

    async def _sweep(self) -> None:
        """Now and then: prune runs past the retention (when the URL sets one; every process with the
        store open does, and the deletes skip what another sweeper holds) and forget the answers of
        operations old enough that no call can be sent again."""
        while True:
            try:
                await self._value(f"DELETE FROM @S@.ops WHERE at < clock_timestamp() - interval '{OPS_KEPT}'")
                if self.retention is not None:
                    cutoff = utc_now() - timedelta(seconds=self.retention)
                    while await self.prune(cutoff, PRUNE_BATCH) >= PRUNE_BATCH:
                        pass
            except Exception:
                log.exception("flue: the Postgres store's sweep failed; trying again later")
            await asyncio.sleep(SWEEP_INTERVAL)

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        await self._write("save_step", run_id, text_in(name), value, remembered=False)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        rows = await self._read("SELECT name, value FROM @S@.steps WHERE run_id = $1 ORDER BY seq", run_id)
        return {text_out(row[0]): row[1] for row in rows}

    # -- signals ------------------------------------------------------------------------------------

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        sent = SignalSent(signal.signal_id, True, None, signal.name, signal.data)  # type: ignore[arg-type]
        answer = await self._write(
            "signal",
            run_id,
            signal.signal_id,
            signal.name,
            text_in(signal.key),
            dumps(signal.data),
            dumps(signal_received_data(sent, signal.key, signal.sent_at)),
            dumps(delivered_step_value(sent, signal.sent_at)),
            dumps({"signalId": signal.signal_id, "name": signal.name}),
            format_timestamp(signal.sent_at),
            format_timestamp(utc_now()),
        )
        if isinstance(answer, dict):
            if answer["error"] == "run_not_found":
                raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
            status = answer["status"]
            raise RunFinished(
                f"Run {run_id} has ended ({status}); it takes no more signals.", details={"run_id": run_id, "status": status}
            )
        created, signal_id, name, data, record = answer
        return SignalSent(signal_id, created, record_of(record), name, json.loads(data))

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        answer = await self._write(
            "take_signal", run_id, owner, name, text_in(step), format_timestamp(utc_now()), timestamp(sent_by)
        )
        if answer is None:
            return None
        if answer[1] is None:
            return Delivery(None, answer[0])
        next_index, signal_id, data, record = answer
        return Delivery(SignalSent(signal_id, True, record_of(record), name, json.loads(data)), next_index)

    # -- schedules ----------------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        answer = await self._write(
            "put_schedule",
            text_in(schedule.name),
            schedule_definition(schedule),
            format_timestamp(schedule.created_at),
            timestamp(schedule.last_tick),
            replace,
            remembered=False,
        )
        return schedule_of(answer[1:]), answer[0]

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._read("SELECT name, definition, created_at, last_tick FROM @S@.schedules WHERE name = $1", text_in(name))
        return schedule_of(list(rows[0])) if rows else None

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._read("SELECT name, definition, created_at, last_tick FROM @S@.schedules ORDER BY name")
        return [schedule_of(list(row)) for row in rows]

    async def delete_schedule(self, name: str) -> bool:
        return await self._write("delete_schedule", text_in(name), remembered=False)

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        return await self._write("advance", text_in(name), timestamp(previous), format_timestamp(tick))

    # -- workers ------------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        age = max(0, int((time.time() - worker.heartbeat_at) * 1000))
        return await self._write(
            "beat", worker.worker_id, worker.host, worker.pid, worker.pid_started, age, list(running), remembered=False
        )

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._read(
            "SELECT worker_id, host, pid, pid_started, extract(epoch FROM clock_timestamp() - beat)::float8 FROM @S@.workers"
        )
        now = time.time()  # ages are the server's: hosts' clocks need not agree
        return [WorkerInfo(row[0], row[1], row[2], row[3], now - row[4]) for row in rows]

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        answer = await self._write("adopt", owner, list(dead), list(workflows))
        return sorted((record_of(row) for row in answer), key=lambda r: (r.created_at, r.run_id))

    async def retire(self, worker_id: str) -> None:
        await self._write("retire", worker_id, remembered=False)


_FINISHED = frozenset(status.value for status in RunStatus if status.finished)
_RECORD = ", ".join(RECORD_COLUMNS)

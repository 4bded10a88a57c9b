"""The Redis run store: runs shared by every process on every host that opens the same URL.

Every operation is one call of a Lua script (``EVALSHA``; :mod:`~flue_node_like.redis_scripts`), so each is atomic
across processes without locks: admission writes the record, the stream and its first event, the
list indexes, the run's place in the ready pool or the due-time index and its idempotency key, and
announces the change, in one step. A process sends all its calls over one ordered, pipelined
connection (:class:`~flue_node_like.redis_link.Link`): concurrent callers share round trips, a
process reads its own writes, and events appended without waiting are written before any later
operation of the same process. ``docs/redis.md`` lists the keys and what survives what.

Other processes' changes arrive through per-key subscriptions
(:class:`~flue_node_like.redis_subscriptions.Subscriptions`): a process hears of the runs it watches,
and of the ready pool, cancels and schedules when it executes runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flue_core.errors import ConfigurationError, RunFinished, RunIdConflict, RunNotFound, StoreUnavailable
from flue_core.errors import UnsupportedSchemaVersion
from flue_core.flow.limits import Limits, Taken
from flue_core.models import RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp, utc_now
from flue_core.snapshot import dumps
from flue_core.store import (
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
    delivered_step_value,
    event_json,
    signal_received_data,
)
from flue_node_like.redis_connection import RedisSettings, reply_error
from flue_node_like.redis_flow import admit_flow_arguments, take_limit_arguments
from flue_node_like.redis_link import Link, ReplyError
from flue_node_like.redis_rows import (
    DURATION_TAIL,
    event_head,
    event_mid,
    from_ms,
    json_or_empty,
    key_or_empty,
    ms,
    netstrings,
    record_of,
    schedule_definition,
    schedule_of,
    timestamp_or_empty,
)
from flue_node_like.redis_scripts import scripts
from flue_node_like.redis_subscriptions import Subscriptions

log = logging.getLogger("flue.redis")

__all__ = ["RedisStore"]

#: Events sent in one call at most (Lua unpacks a call's arguments onto a bounded stack).
APPEND_BATCH = 500
#: Finished runs removed by one call of the retention sweep.
PRUNE_BATCH = 1000
#: Seconds between two retention sweeps.
SWEEP_INTERVAL = 60.0


class RedisStore(RunStore):
    """Runs in Redis under the URL's key prefix (``redis_connection`` documents the URL and its
    ``retention`` option). ``feed_heartbeat``: seconds of silence after which the connection of the
    change subscriptions is probed."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True, feed=True)

    def __init__(self, url: str = "redis://localhost:6379/0", *, feed_heartbeat: float = 5.0) -> None:
        self.settings = RedisSettings.from_url(url)
        self.url = self.settings.url
        self.retention = self.settings.retention
        self.feed_heartbeat = feed_heartbeat
        self._base = self.settings.prefix + ":"
        self._keys = (self._base + "layout",)
        self._origin = uuid.uuid4().hex[:16]
        self._counter = itertools.count()
        self._link: Link | None = None
        self.feed: Subscriptions | None = None
        self._on_change: ChangeListener = lambda keys: None
        self._appends: list[tuple[str, list[tuple[int, str]]]] = []
        self._sweeper: asyncio.Task[None] | None = None

    # -- connection ---------------------------------------------------------------------------------

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        link = Link(self.settings, "flue-runs", scripts())
        await link.open()
        try:
            self._link = link
            layout, expected = await self._read("open")
            if layout != expected:
                raise UnsupportedSchemaVersion(
                    f"The runs under {self._base}* were written in layout {layout}; this version of Flue reads"
                    f" layout {expected}.",
                    details={"url": self.url, "layout": layout},
                )
            feed = Subscriptions(self.settings, self._base + "ch:", self._origin, heartbeat=self.feed_heartbeat)
            await feed.start(on_change)
            self.feed = feed
        except BaseException:
            self._link = None
            await link.close()
            raise
        if self.retention is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(self.retention), name="flue-redis-retention")

    async def close(self) -> None:
        link = self._link
        if link is None:
            return
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(BaseException):
                await sweeper
        with contextlib.suppress(StoreUnavailable):
            await self.flush()
        self._link = None
        feed, self.feed = self.feed, None
        if feed is not None:
            await feed.stop()
        await link.close()

    def interest(self, key: str, watched: bool) -> None:
        if self.feed is not None:
            self.feed.want(key, watched)

    def _send(self, op: str, opid: str, args: Sequence[Any]) -> asyncio.Future[Any]:
        link = self._link
        if link is None:
            raise StoreUnavailable(f"The Redis store {self.url} is closed.")
        if self._appends:
            self._send_appends()  # first: an operation sees every event appended before it
        return link.script(op, self._keys, (self._base, self._origin, opid, *args))

    async def _write(self, op: str, *args: Any) -> list[Any]:
        """One writing call (with an operation id, see ``lua/runs.lua``); listeners hear what changed."""
        reply = await self._answer(self._send(op, f"{self._origin}.{next(self._counter)}", args))
        if reply[0]:
            self._on_change(reply[0])
        return reply

    async def _read(self, op: str, *args: Any) -> Any:
        return await self._answer(self._send(op, "", args))

    async def _command(self, *args: Any) -> Any:
        link = self._link
        if link is None:
            raise StoreUnavailable(f"The Redis store {self.url} is closed.")
        if self._appends:
            self._send_appends()
        return await self._answer(link.send(*args))

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await future
        except ReplyError as exc:
            raise self._refusal(str(exc)) from None

    def _refusal(self, message: str) -> Exception:
        code, *details = message.split(" ")[1:] if message.startswith("FLUE ") else ("", message)
        if code == "run_id_conflict":
            return RunIdConflict(f"A run with id {details[0]!r} already exists.", details={"run_id": details[0]})
        if code == "run_not_found":
            return RunNotFound(f"Run {details[0]!r} was not found.", details={"run_id": details[0]})
        if code == "run_finished":
            run_id, status = details
            return RunFinished(
                f"Run {run_id} has ended ({status}); it takes no more signals.", details={"run_id": run_id, "status": status}
            )
        if code == "layout_type":
            return ConfigurationError(
                f"{self._base}layout is a {details[0]}, not the version of Flue's keys: something other than"
                f" Flue writes under {self._base}*; give Flue a key prefix of its own (?prefix=) in {self.url}.",
                details={"url": self.url, "prefix": self.settings.prefix},
            )
        return reply_error(message, self.url)

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        scheduled = run.scheduled
        start = run.start_at if scheduled else None
        debounced = scheduled and run.debounce_key is not None
        waiting_for = WaitingFor(kind="debounce" if debounced else "start") if scheduled else None
        reply = await self._write(
            "admit",
            run.run_id,
            run.workflow,
            run.key or "",
            json_or_empty(run.input),
            format_timestamp(run.created_at),
            ms(run.created_at),
            "" if scheduled else run.owner or "",
            run.parent_run_id or "",
            timestamp_or_empty(start),
            "" if start is None else ms(start),
            "" if waiting_for is None else waiting_for.model_dump_json(exclude_none=True),
            json_or_empty(run.carrier),
            event_json(run.run_id, run.first_event),
            run.rerun_of or "",
            netstrings(item for step in run.steps for item in step) if run.steps else "",
            *admit_flow_arguments(run, debounced),
        )
        if len(reply) > 2:  # the key was bound already (or this very call was applied before)
            return Admission(record_of(reply[2]), created=bool(reply[1]))
        record = RunRecord.trusted(
            run_id=run.run_id,
            workflow=run.workflow,
            status=RunStatus.SCHEDULED if scheduled else RunStatus.QUEUED,
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
            wake_at=start,
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
        return Admission(record, created=True)

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        now = utc_now()
        when = format_timestamp(now)
        reply = await self._write(
            "claim", run_id, owner, "" if limit is None else limit, when, ms(now), event_head(run_id),
            event_mid("signal_received", when),
        )  # fmt: skip
        if reply[1] is None:
            return None
        return Attempt(record_of(reply[1]), int(reply[2]), reply[3] == "1")

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        now = utc_now()
        reply = await self._write(
            "requeue", run_id, owner or "", held_by or "", "1" if interrupted else "", ms(now), event_head(run_id),
            event_mid("signal_received", format_timestamp(now)),
        )  # fmt: skip
        return None if reply[1] is None else record_of(reply[1])

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        when = format_timestamp(utc_now())
        waiting_for, wake_at = suspension.waiting_for, suspension.wake_at
        reply = await self._write(
            "suspend",
            run_id,
            owner,
            waiting_for.kind,
            waiting_for.name or "",
            " ".join(waiting_for.run_ids or ()),
            waiting_for.model_dump_json(exclude_none=True),
            timestamp_or_empty(wake_at),
            "" if wake_at is None else ms(wake_at),
            event_head(run_id),
            event_mid("signal_received", when),
            event_mid("run_waiting", when),
            dumps(suspension.event_data()),
        )
        if reply[1] is None:
            return None
        return Suspended(reply[1] == 1, int(reply[2]), record_of(reply[3]))

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        end_data = dumps(outcome.event_data(None))
        assert end_data.endswith(DURATION_TAIL), end_data
        ended = format_timestamp(outcome.ended_at)
        reply = await self._write(
            "finish",
            run_id,
            outcome.status.value,
            ended,
            ms(outcome.ended_at),
            json_or_empty(outcome.result),
            "" if outcome.error is None else outcome.error.model_dump_json(exclude_none=True),
            "*" if only_from is None else " ".join(status.value for status in only_from),
            held_by or "",
            ms(utc_now()),
            event_head(run_id),
            event_mid("signal_received", ended),
            event_mid("run_end", ended),
            end_data[: -len("null}")],
        )
        return None if reply[1] is None else record_of(reply[1])

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        reply = await self._write("cancel", run_id)
        return None if reply[1] is None else record_of(reply[1])

    # -- the ready pool and the due-time index ------------------------------------------------------

    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        if limit <= 0 or not workflows or (only is not None and not only):
            return Taken()
        flows = [part for name, limits in workflows.items() for part in (name, *take_limit_arguments(limits))]
        chosen = ("1", *only) if only is not None else ("0",)
        reply = await self._write("take", owner, limit, ms(utc_now()), len(workflows), *flows, *chosen)
        retry = reply[2]
        return Taken([record_of(flat) for flat in reply[1]], None if retry == "" else from_ms(retry))

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        reply = await self._write("wake", ms(now), limit)
        return int(reply[1])

    async def next_wake(self) -> datetime | None:
        first = await self._command("ZRANGE", self._base + "due", 0, 0, "WITHSCORES")
        return from_ms(first[1]) if first else None

    # -- events -------------------------------------------------------------------------------------

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        if self._link is None or not events:
            return
        written = [(event.index, text) for event in events if _encodable(text := event_json(run_id, event))]
        if not written:
            return
        if not self._appends:
            asyncio.get_running_loop().call_soon(self._send_appends)
        self._appends.append((run_id, written))

    def _send_appends(self) -> None:
        """Send the events appended so far (the next operation, or this turn's end, sends them)."""
        pending, self._appends = self._appends, []
        link = self._link
        if not pending or link is None:
            return
        args: list[Any] = []
        count = 0
        for run_id, events in pending:
            for start in range(0, len(events), APPEND_BATCH):
                part = events[start : start + APPEND_BATCH]
                args += (run_id, len(part), *(item for event in part for item in event))
                count += len(part)
                if count >= APPEND_BATCH:
                    self._send_batch(link, args)
                    args, count = [], 0
        if args:
            self._send_batch(link, args)

    def _send_batch(self, link: Link, args: list[Any]) -> None:
        future = link.script("append", self._keys, (self._base, self._origin, "", *args))
        future.add_done_callback(self._appended)

    def _appended(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.warning("flue: events could not be stored in Redis and were dropped: %s", error)
            return
        changed = future.result()[0]
        if changed:
            self._on_change(changed)

    async def flush(self) -> None:
        if self._link is not None:
            await self._command("PING")

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        reply = await self._read("read", run_id, "" if after is None else after, max(limit, 0))
        if reply is None:
            return None
        tail, closed, first, *texts = reply
        return EventPage([StoredEvent(first + i, text) for i, text in enumerate(texts)], tail, closed == 1)

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        flat = await self._command("HGETALL", self._base + "run:" + run_id)
        return record_of(flat) if flat else None

    async def list(self, query: RunQuery) -> list[RunRecord]:
        reply = await self._read(
            "list",
            query.limit,
            "" if query.after is None else ms(query.after[0]),
            "" if query.after is None else query.after[1],
            query.workflow or "",
            "" if query.status is None else query.status.value,
            query.parent or "",
            query.rerun_of or "",
            key_or_empty(query.concurrency_key),
            key_or_empty(query.rate_key),
            "" if query.started_after is None else ms(query.started_after),
        )
        return [record_of(flat) for flat in reply]

    async def count_runs(
        self, workflows: Collection[str], statuses: Collection[RunStatus], limit: int
    ) -> dict[tuple[str, RunStatus], int]:
        link = self._link
        if link is None:
            raise StoreUnavailable(f"The Redis store {self.url} is closed.")
        pairs = [(workflow, status) for workflow in workflows for status in statuses]
        # The index of each workflow and status (lua/runs.lua): one ZCARD each, all in one round trip.
        sent = [link.send("ZCARD", f"{self._base}runs:wfst:{workflow}:{status.value}") for workflow, status in pairs]
        counts: dict[tuple[str, RunStatus], int] = {}
        for pair, future in zip(pairs, sent):
            n = await self._answer(future)
            if n:
                counts[pair] = n
        return counts

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        reply = await self._write("prune", ms(ended_before), limit)
        return int(reply[1])

    async def _sweep(self, retention: float) -> None:
        """Prune runs that ended more than ``retention`` seconds ago, now and then (every process
        with the store open does; the calls are atomic, so several sweepers never clash)."""
        while True:
            try:
                cutoff = utc_now() - timedelta(seconds=retention)
                while await self.prune(cutoff, PRUNE_BATCH) >= PRUNE_BATCH:
                    pass
            except Exception:
                log.exception("flue: pruning finished runs from Redis failed; trying again later")
            await asyncio.sleep(SWEEP_INTERVAL)

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        await self._write("save_step", run_id, name, value)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        names, flat = await self._read("steps", run_id)
        values = dict(zip(flat[::2], flat[1::2]))
        ordered = {name: values.pop(name) for name in names if name in values}
        ordered.update(values)  # saved by a version of Flue that kept no order: after the others
        return ordered

    # -- signals ------------------------------------------------------------------------------------

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        sent = SignalSent(signal.signal_id, True, None, signal.name, signal.data)  # type: ignore[arg-type]
        reply = await self._write(
            "signal",
            run_id,
            signal.signal_id,
            signal.name,
            signal.key or "",
            dumps(signal.data),
            dumps(signal_received_data(sent, signal.key, signal.sent_at)),
            dumps(delivered_step_value(sent, signal.sent_at)),
            dumps({"signalId": signal.signal_id, "name": signal.name}),
            ms(signal.sent_at),
            event_head(run_id),
            event_mid("signal_received", format_timestamp(signal.sent_at)),
        )
        _, created, signal_id, name, data, flat = reply
        return SignalSent(signal_id, created == 1, record_of(flat), name, json.loads(data))

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        when = format_timestamp(utc_now())
        reply = await self._write(
            "take_signal", run_id, owner, name, step, event_head(run_id), event_mid("signal_received", when),
            event_mid("signal_delivered", when), "" if sent_by is None else ms(sent_by),
        )  # fmt: skip
        if reply[1] is None:
            return None
        _, next_index, signal_id, data = reply
        if not signal_id:
            return Delivery(None, int(next_index))
        record = await self.get(run_id)
        return Delivery(SignalSent(signal_id, True, record, name, json.loads(data)), int(next_index))  # type: ignore[arg-type]

    # -- schedules ----------------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        reply = await self._write(
            "put_schedule",
            schedule.name,
            schedule_definition(schedule),
            format_timestamp(schedule.created_at),
            timestamp_or_empty(schedule.last_tick),
            "1" if replace else "",
        )
        return schedule_of(reply[2]), reply[1] == 1

    async def get_schedule(self, name: str) -> Schedule | None:
        (found,) = await self._read("schedules", name)
        return None if found is None else schedule_of(found)

    async def list_schedules(self) -> list[Schedule]:
        return sorted((schedule_of(fields) for fields in await self._read("schedules", "")), key=lambda s: s.name)

    async def delete_schedule(self, name: str) -> bool:
        reply = await self._write("delete_schedule", name)
        return reply[1] == 1

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        reply = await self._write("advance", name, timestamp_or_empty(previous), format_timestamp(tick))
        return reply[1] == 1

    # -- workers ------------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        # The server's clock dates the heartbeat; the caller only says how old it is by its own clock.
        age = max(0, int((time.time() - worker.heartbeat_at) * 1000))
        info = dumps({"host": worker.host, "pid": worker.pid, "pidStarted": worker.pid_started})
        reply = await self._write("beat", worker.worker_id, info, age, *running)
        return list(reply[1])

    async def workers(self) -> list[WorkerInfo]:
        server_now, *rest = await self._read("workers")
        local_now = time.time()
        found = []
        for worker_id, info, beat in zip(rest[::3], rest[1::3], rest[2::3]):
            details = json.loads(info)
            age = (server_now - float(beat)) / 1000  # judged by the server's clock, not this host's
            found.append(WorkerInfo(worker_id, details["host"], details["pid"], details["pidStarted"], local_now - age))
        return found

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        dead = list(dead)
        reply = await self._write("adopt", owner, len(dead), *dead, *workflows)
        return sorted((record_of(flat) for flat in reply[1]), key=lambda r: (r.created_at, r.run_id))

    async def retire(self, worker_id: str) -> None:
        await self._write("retire", worker_id)


def _encodable(text: str) -> bool:
    """Whether ``text`` can go to Redis as UTF-8: an event that cannot (a lone surrogate slipped
    under ``ctx.emit``'s checks) is dropped alone, never failing the batch it would share."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        log.warning("flue: dropped an event that is not valid Unicode")
        return False
    return True

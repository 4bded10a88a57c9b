"""The in-memory store: everything the contract asks, for tests and throwaway processes.

``memory://`` is private to its store object. ``memory://<name>`` shares its data with every store
of that name in this process, open at the same time or one after the other, which is how tests run
"two processes" on one store, or restart one.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import anyio.lowlevel

from flue_core.errors import ConfigurationError, RunFinished, RunIdConflict, RunNotFound, StoreUnavailable
from flue_core.flow.gate import Gate
from flue_core.flow.limits import Limits, Taken
from flue_core.models import RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp, utc_now
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
    delivered_step_value,
    event_json,
    signal_received_data,
)

_HELD = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
#: Runs counted per turn of the event loop by count_runs.
_COUNT_SLICE = 2000
_PARKED = frozenset({RunStatus.SCHEDULED, RunStatus.WAITING})


@dataclass
class _Signal:
    sent: SignalSent
    key: str | None
    sent_at: datetime
    announced: bool = False
    delivered: bool = False


@dataclass
class _Run:
    record: RunRecord
    owner: str | None
    ready_at: datetime
    events: list[str] = field(default_factory=list)
    closed: bool = False
    resume: bool = False  # woken from a wait, or handed back after an interruption: the attempt continues
    steps: dict[str, str] = field(default_factory=dict)
    signals: list[_Signal] = field(default_factory=list)


@dataclass
class _Data:
    runs: dict[str, _Run] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)  # (created_at ISO, run_id), ascending
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    listeners: list[tuple[MemoryStore, ChangeListener]] = field(default_factory=list)
    pool: dict[str, tuple[int, datetime, str]] = field(default_factory=dict)  # the ready pool: its runs' places
    pool_order: list[tuple[int, datetime, str]] = field(default_factory=list)  # the places, in take order
    active: set[str] = field(default_factory=set)  # runs queued for a worker or running: holding slots
    timed: set[str] = field(default_factory=set)  # scheduled and waiting runs with a wake_at
    debouncing: dict[tuple[str, str], str] = field(default_factory=dict)  # (workflow, debounce key): run id


_NAMED: dict[str, _Data] = {}


class MemoryStore(RunStore):
    """Keeps runs in this process's memory: fast, and gone when the process ends."""

    capabilities = Capabilities(durable=False, shared=False)

    def __init__(self, url: str = "memory://") -> None:
        if not isinstance(url, str) or not url.startswith("memory://"):
            raise ConfigurationError(f"Memory store URLs look like memory:// or memory://<name>, not {url!r}.")
        self.url = url
        name = url[len("memory://") :]
        data = _NAMED.setdefault(name, _Data()) if name else _Data()
        self._data = data
        self._runs, self._keys, self._order = data.runs, data.keys, data.order
        self._workers, self._schedules = data.workers, data.schedules
        self._pool, self._timed = data.pool, data.timed
        self._pool_order, self._active = data.pool_order, data.active
        self._open = False

    async def open(self, on_change: ChangeListener) -> None:
        self._data.listeners.append((self, on_change))
        self._open = True

    async def close(self) -> None:
        self._data.listeners[:] = [entry for entry in self._data.listeners if entry[0] is not self]
        self._open = False

    def _changed(self, *ids: str) -> None:
        for _, listener in list(self._data.listeners):
            listener(ids)

    def _check_open(self) -> None:
        if not self._open:
            raise StoreUnavailable("The memory store is closed.")

    def _held(self, run_id: str, owner: str) -> _Run | None:
        run = self._runs.get(run_id)
        if run is None or run.record.status != RunStatus.RUNNING or run.owner != owner:
            return None
        return run

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        self._check_open()
        if run.key is not None:
            existing = self._keys.get((run.workflow, run.key))
            if existing is not None:
                return Admission(self._runs[existing].record, created=False)
        if run.debounce_key is not None:
            folded = self._fold(run)
            if folded is not None:
                return Admission(folded, created=False)
        if run.run_id in self._runs:
            raise RunIdConflict(f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id})
        record = run.record()
        owner = None if run.scheduled else run.owner
        stored = _Run(record, owner, run.created_at, [event_json(run.run_id, run.first_event)])
        for name, value in run.steps:  # the first of a name stays, as with save_step
            stored.steps.setdefault(name, value)
        self._runs[run.run_id] = stored
        self._index(stored)
        if run.key is not None:
            self._keys[(run.workflow, run.key)] = run.run_id
        if run.debounce_key is not None:
            self._data.debouncing[(run.workflow, run.debounce_key)] = run.run_id
        bisect.insort(self._order, (run.created_at.isoformat(), run.run_id))
        self._changed(run.run_id, *((READY,) if owner is None else ()))
        return Admission(record, created=True)

    def _fold(self, new: NewRun) -> RunRecord | None:
        """Fold a debounced start into the pending run of its key, if there is one (see ``admit``)."""
        assert new.debounce_key is not None
        pending = self._runs.get(self._data.debouncing.get((new.workflow, new.debounce_key), ""))
        if pending is None or pending.record.status != RunStatus.SCHEDULED or pending.record.waiting_for is None:
            return None
        if pending.record.waiting_for.kind != "debounce" or pending.record.cancel_requested or new.start_at is None:
            return None
        record = self._update(
            pending,
            input=new.input,
            wake_at=new.start_at,
            priority=new.priority,
            concurrency_key=new.concurrency_key,
            rate_key=new.rate_key,
        )
        data = {"input": new.input, "startAt": format_timestamp(new.start_at)}
        self._write(pending, "run_debounced", data, new.created_at)
        self._changed(record.run_id, READY)
        return record

    def _update(self, run: _Run, **changes: Any) -> RunRecord:
        run.record = run.record.model_copy(update=changes)
        self._index(run)
        return run.record

    def _index(self, run: _Run) -> None:
        """Keep the ready pool and the due-time index in step with the run's status and owner."""
        record = run.record
        run_id = record.run_id
        if record.status == RunStatus.QUEUED and run.owner is None:
            if run_id not in self._pool:  # highest priority first, then oldest ready, then by id
                place = self._pool[run_id] = (-record.priority, run.ready_at, run_id)
                bisect.insort(self._pool_order, place)
        elif run_id in self._pool:
            place = self._pool.pop(run_id)
            del self._pool_order[bisect.bisect_left(self._pool_order, place)]
        if record.status in _HELD and run.owner is not None:
            self._active.add(run_id)
        else:
            self._active.discard(run_id)
        if record.status in _PARKED and record.wake_at is not None:
            self._timed.add(record.run_id)
        else:
            self._timed.discard(record.run_id)

    def _write(self, run: _Run, type: str, data: dict[str, Any], when: datetime | None = None) -> None:
        """Store an event at the end of the stream (the store's own writes)."""
        event = NewEvent(len(run.events), type, data, when or utc_now())
        run.events.append(event_json(run.record.run_id, event))

    def _announce(self, run: _Run) -> None:
        for signal in run.signals:
            if not signal.announced:
                signal.announced = True
                self._write(run, "signal_received", signal_received_data(signal.sent, signal.key, signal.sent_at))

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None or run.record.status != RunStatus.QUEUED or run.owner != owner:
            return None
        record = run.record
        if limit is not None and self._running(record.workflow, record.concurrency_key) >= limit:
            run.owner = None
            self._index(run)
            self._changed(READY)
            return None
        self._announce(run)
        resumed, run.resume = run.resume, False
        self._update(
            run,
            status=RunStatus.RUNNING,
            attempt=record.attempt + (0 if resumed else 1),
            started_at=record.started_at or utc_now(),
        )
        self._changed(run_id)
        return Attempt(run.record, len(run.events), resumed)

    def _running(self, workflow: str, concurrency_key: str | None) -> int:
        runs = (self._runs[run_id] for run_id in self._active)
        return sum(
            1
            for run in runs
            if run.record.workflow == workflow
            and run.record.status == RunStatus.RUNNING
            and run.record.concurrency_key == concurrency_key
        )

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None or run.record.status != RunStatus.RUNNING or (held_by is not None and run.owner != held_by):
            return None
        run.owner, run.resume, run.ready_at = owner, interrupted, utc_now()
        record = self._update(run, status=RunStatus.QUEUED, recoveries=run.record.recoveries + interrupted)
        self._changed(run_id, *((READY,) if owner is None else ()))
        return record

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        self._check_open()
        run = self._held(run_id, owner)
        if run is None:
            return None
        self._announce(run)
        waiting_for = suspension.waiting_for
        if run.record.cancel_requested or self._satisfied(run, waiting_for):
            self._changed(run_id)
            return Suspended(False, len(run.events), run.record)
        run.owner, run.resume = None, waiting_for.kind != "retry"
        record = self._update(run, status=RunStatus.WAITING, wake_at=suspension.wake_at, waiting_for=waiting_for)
        self._write(run, "run_waiting", suspension.event_data())
        self._changed(run_id, READY)
        return Suspended(True, len(run.events), record)

    def _satisfied(self, run: _Run, waiting_for: WaitingFor) -> bool:
        if waiting_for.kind == "signal":
            return any(not s.delivered and s.sent.name == waiting_for.name for s in run.signals)
        if waiting_for.kind == "children":
            return self._children_done(waiting_for.run_ids or ())
        return False

    def _children_done(self, run_ids: Collection[str]) -> bool:
        return all(child is None or child.record.finished for child in (self._runs.get(i) for i in run_ids))

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        record = run.record
        if (
            record.finished
            or (only_from is not None and record.status not in only_from)
            or (held_by is not None and run.owner != held_by)
        ):
            return record
        self._announce(run)
        end = NewEvent(len(run.events), "run_end", outcome.event_data(record.started_at), outcome.ended_at)
        run.events.append(event_json(run_id, end))
        run.closed = True
        final = self._update(
            run,
            status=outcome.status,
            ended_at=outcome.ended_at,
            result=outcome.result,
            error=outcome.error,
            wake_at=None,
            waiting_for=None,
        )
        self._changed(run_id)
        parent = self._runs.get(record.parent_run_id) if record.parent_run_id else None
        if parent is not None and parent.record.status == RunStatus.WAITING:
            waiting_for = parent.record.waiting_for
            if waiting_for is not None and waiting_for.kind == "children" and run_id in (waiting_for.run_ids or ()):
                if self._children_done(waiting_for.run_ids or ()):
                    self._wake(parent, utc_now())
        return final

    def _wake(self, run: _Run, ready_at: datetime) -> None:
        run.owner, run.ready_at = None, ready_at
        self._update(run, status=RunStatus.QUEUED, wake_at=None, waiting_for=None)
        self._changed(run.record.run_id, READY)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        if run.record.finished or run.record.cancel_requested:
            return run.record
        record = self._update(run, cancel_requested=True)
        self._changed(run_id, CANCELS)
        return record

    # -- the ready pool and the due-time index ------------------------------------------------------

    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        self._check_open()
        gate = Gate(workflows, utc_now())
        if gate.active:  # starts in a rate limit's window may have ended since: those count too
            rated = any(limits.rate is not None for limits in workflows.values())
            for run in self._runs.values() if rated else (self._runs[run_id] for run_id in self._active):
                gate.count(run.record, run.owner is not None)
        taken: list[RunRecord] = []
        for _, _, run_id in list(self._pool_order):
            if len(taken) >= limit:
                break
            run = self._runs[run_id]
            if run.record.workflow not in workflows or (only is not None and run.record.run_id not in only):
                continue
            if not gate.admits(run.record):
                continue
            run.owner = owner
            self._index(run)
            gate.took(run.record)
            taken.append(run.record)
        return Taken(taken, gate.retry_at)

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        self._check_open()
        parked = (self._runs[run_id] for run_id in self._timed)
        due = sorted(
            (run for run in parked if run.record.wake_at is not None and run.record.wake_at <= now),
            key=lambda run: (run.record.wake_at, run.record.run_id),
        )[:limit]
        for run in due:
            assert run.record.wake_at is not None
            self._wake(run, run.record.wake_at)
        return len(due)

    async def next_wake(self) -> datetime | None:
        self._check_open()
        times = [self._runs[run_id].record.wake_at for run_id in self._timed]
        return min((time for time in times if time is not None), default=None)

    # -- events -------------------------------------------------------------------------------------

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        run = self._runs.get(run_id)
        if run is None or run.closed or not self._open:
            return
        for event in events:
            if event.index == len(run.events):
                run.events.append(event_json(run_id, event))
        self._changed(run_id)

    async def flush(self) -> None:
        return None

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        tail = len(run.events) - 1
        start = tail + 1 if after is None else max(after + 1, 0)
        chosen = run.events[start : start + max(limit, 0)]
        return EventPage([StoredEvent(start + i, text) for i, text in enumerate(chosen)], tail, run.closed)

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        return None if run is None else run.record

    async def list(self, query: RunQuery) -> list[RunRecord]:
        self._check_open()
        end = len(self._order)
        if query.after is not None:
            end = bisect.bisect_left(self._order, (query.after[0].isoformat(), query.after[1]))
        found: list[RunRecord] = []
        for position in range(end - 1, -1, -1):
            record = self._runs[self._order[position][1]].record
            if query.workflow is not None and record.workflow != query.workflow:
                continue
            if query.status is not None and record.status != query.status:
                continue
            if query.parent is not None and record.parent_run_id != query.parent:
                continue
            if query.rerun_of is not None and record.rerun_of != query.rerun_of:
                continue
            if query.concurrency_key is not None and record.concurrency_key != query.concurrency_key:
                continue
            if query.rate_key is not None and record.rate_key != query.rate_key:
                continue
            if query.started_after is not None and (record.started_at is None or record.started_at <= query.started_after):
                continue
            found.append(record)
            if len(found) >= query.limit:
                break
        return found

    async def count_runs(
        self, workflows: Collection[str], statuses: Collection[RunStatus], limit: int
    ) -> dict[tuple[str, RunStatus], int]:
        self._check_open()
        wanted, of = frozenset(statuses), frozenset(workflows)
        counts: dict[tuple[str, RunStatus], int] = {}
        records = [run.record for run in self._runs.values()]  # runs added meanwhile wait for the next count
        for start in range(0, len(records), _COUNT_SLICE):
            for record in records[start : start + _COUNT_SLICE]:
                if record.status in wanted and record.workflow in of:
                    key = (record.workflow, record.status)
                    counts[key] = counts.get(key, 0) + 1
            await anyio.lowlevel.checkpoint()  # a long count does not hold the event loop
        return counts

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        self._check_open()
        doomed = list(islice((run.record for run in self._runs.values() if self._prunable(run.record, ended_before)), limit))
        for record in doomed:
            del self._runs[record.run_id]
            self._timed.discard(record.run_id)
            if record.key is not None:
                self._keys.pop((record.workflow, record.key), None)
            self._order.remove((record.created_at.isoformat(), record.run_id))
        return len(doomed)

    def _prunable(self, record: RunRecord, ended_before: datetime) -> bool:
        """Ended before the cutoff, and not the child of a parent that has not ended (and may still
        wait for its result)."""
        if record.ended_at is None or record.ended_at >= ended_before:
            return False
        parent = None if record.parent_run_id is None else self._runs.get(record.parent_run_id)
        return parent is None or parent.record.finished

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is not None:
            run.steps.setdefault(name, value)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        self._check_open()
        run = self._runs.get(run_id)
        return {} if run is None else dict(run.steps)

    # -- signals ------------------------------------------------------------------------------------

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
        record = run.record
        if signal.key is not None:
            for kept in run.signals:
                if kept.key == signal.key:
                    return SignalSent(kept.sent.signal_id, False, record, kept.sent.name, kept.sent.data)
        if record.finished:
            raise RunFinished(
                f"Run {run_id} has ended ({record.status.value}); it takes no more signals.",
                details={"run_id": run_id, "status": record.status.value},
            )
        kept = _Signal(SignalSent(signal.signal_id, True, record, signal.name, signal.data), signal.key, signal.sent_at)
        run.signals.append(kept)
        if record.status != RunStatus.RUNNING:
            self._announce(run)
        waiting_for = record.waiting_for
        if record.status == RunStatus.WAITING and waiting_for is not None and waiting_for.kind == "signal":
            if waiting_for.name == signal.name:
                self._wake(run, signal.sent_at)
        self._changed(run_id)
        return SignalSent(signal.signal_id, True, run.record, signal.name, signal.data)

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        self._check_open()
        run = self._held(run_id, owner)
        if run is None:
            return None
        self._announce(run)
        for kept in run.signals:
            if not kept.delivered and kept.sent.name == name and (sent_by is None or kept.sent_at <= sent_by):
                kept.delivered = True
                run.steps.setdefault(step, dumps(delivered_step_value(kept.sent, kept.sent_at)))
                self._write(run, "signal_delivered", {"signalId": kept.sent.signal_id, "name": name})
                self._changed(run_id)
                return Delivery(kept.sent, len(run.events))
        self._changed(run_id)
        return Delivery(None, len(run.events))

    # -- schedules ----------------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        self._check_open()
        existing = self._schedules.get(schedule.name)
        if existing is not None and not replace:
            return existing, False
        if existing is not None:
            schedule = schedule.model_copy(update={"created_at": existing.created_at, "last_tick": existing.last_tick})
        self._schedules[schedule.name] = schedule
        self._changed(SCHEDULES)
        return schedule, existing is None

    async def get_schedule(self, name: str) -> Schedule | None:
        self._check_open()
        return self._schedules.get(name)

    async def list_schedules(self) -> list[Schedule]:
        self._check_open()
        return [self._schedules[name] for name in sorted(self._schedules)]

    async def delete_schedule(self, name: str) -> bool:
        self._check_open()
        found = self._schedules.pop(name, None) is not None
        if found:
            self._changed(SCHEDULES)
        return found

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        self._check_open()
        schedule = self._schedules.get(name)
        if schedule is None or schedule.last_tick != previous:
            return False
        self._schedules[name] = schedule.model_copy(update={"last_tick": tick})
        return True

    # -- workers ------------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        self._check_open()
        self._workers[worker.worker_id] = worker
        stop = []
        for run_id in running:
            run = self._runs.get(run_id)
            if run is not None and (run.owner != worker.worker_id or run.record.cancel_requested):
                stop.append(run_id)
        return stop

    async def workers(self) -> list[WorkerInfo]:
        self._check_open()
        return list(self._workers.values())

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        self._check_open()
        for worker_id in dead:
            self._workers.pop(worker_id, None)
        adopted = []
        for run in self._runs.values():
            record = run.record
            if record.status not in _HELD or record.workflow not in workflows:
                continue
            if run.owner is not None and run.owner not in self._workers:
                run.owner = owner
                self._index(run)
                adopted.append(record)
        return adopted

    async def retire(self, worker_id: str) -> None:
        self._check_open()
        self._workers.pop(worker_id, None)


"""The in-memory store: everything the contract asks, for tests and throwaway processes."""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from flue_core.errors import RunIdConflict, StoreUnavailable
from flue_core.models import RunRecord, RunStatus, utc_now
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


@dataclass
class _Run:
    record: RunRecord
    owner: str | None
    events: list[str] = field(default_factory=list)
    closed: bool = False
    steps: dict[str, str] = field(default_factory=dict)


class MemoryStore(RunStore):
    """Keeps runs in this process's memory: fast, and gone when the process ends."""

    capabilities = Capabilities(durable=False, shared=False)

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._runs: dict[str, _Run] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._order: list[tuple[str, str]] = []  # (created_at ISO, run_id), ascending
        self._workers: dict[str, WorkerInfo] = {}
        self._on_change: ChangeListener | None = None
        self._open = False

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _changed(self, run_id: str) -> None:
        if self._on_change is not None:
            self._on_change((run_id,))

    def _check_open(self) -> None:
        if not self._open:
            raise StoreUnavailable("The memory store is closed.")

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        self._check_open()
        if run.key is not None:
            existing = self._keys.get((run.workflow, run.key))
            if existing is not None:
                return Admission(self._runs[existing].record, created=False)
        if run.run_id in self._runs:
            raise RunIdConflict(f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id})
        record = RunRecord(
            run_id=run.run_id,
            workflow=run.workflow,
            status=RunStatus.QUEUED,
            input=run.input,
            key=run.key,
            created_at=run.created_at,
        )
        self._runs[run.run_id] = _Run(record, run.owner, [event_json(run.run_id, run.first_event)])
        if run.key is not None:
            self._keys[(run.workflow, run.key)] = run.run_id
        bisect.insort(self._order, (run.created_at.isoformat(), run.run_id))
        self._changed(run.run_id)
        return Admission(record, created=True)

    def _update(self, run: _Run, **changes: object) -> RunRecord:
        run.record = run.record.model_copy(update=changes)
        self._changed(run.record.run_id)
        return run.record

    async def claim(self, run_id: str, owner: str) -> Attempt | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None or run.record.status != RunStatus.QUEUED or run.owner != owner:
            return None
        record = run.record
        started = record.started_at or utc_now()
        self._update(run, status=RunStatus.RUNNING, attempt=record.attempt + 1, started_at=started)
        return Attempt(run.record, len(run.events))

    async def requeue(self, run_id: str, owner: str | None, *, held_by: str | None = None) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None or run.record.status != RunStatus.RUNNING or (held_by is not None and run.owner != held_by):
            return None
        run.owner = owner
        return self._update(run, status=RunStatus.QUEUED)

    async def finish(
        self, run_id: str, outcome: Outcome, *, only_from: RunStatus | None = None, held_by: str | None = None
    ) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        record = run.record
        if (
            record.finished
            or (only_from is not None and record.status != only_from)
            or (held_by is not None and run.owner != held_by)
        ):
            return record
        end = NewEvent(len(run.events), "run_end", outcome.event_data(record.started_at), outcome.ended_at)
        run.events.append(event_json(run_id, end))
        run.closed = True
        return self._update(
            run, status=outcome.status, ended_at=outcome.ended_at, result=outcome.result, error=outcome.error
        )

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        self._check_open()
        run = self._runs.get(run_id)
        if run is None:
            return None
        if run.record.finished or run.record.cancel_requested:
            return run.record
        return self._update(run, cancel_requested=True)

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
            found.append(record)
            if len(found) >= query.limit:
                break
        return found

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
            if record.finished or record.workflow not in workflows:
                continue
            if run.owner is None or run.owner not in self._workers:
                run.owner = owner
                adopted.append(record)
        return adopted

    async def retire(self, worker_id: str) -> None:
        self._check_open()
        self._workers.pop(worker_id, None)


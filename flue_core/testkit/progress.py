"""How far an environment's runs can get: whether anything can still happen at the current virtual
time (:func:`busy`), what falls due next (:func:`next_due`), and a run's state in words."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from flue_core.cron import ticks_after
from flue_core.models import UNFINISHED, RunRecord, RunStatus, format_timestamp
from flue_core.store import RunQuery

if TYPE_CHECKING:
    from flue_core.runtime import Runtime
    from flue_core.testkit.clock import VirtualClock
    from flue_core.testkit.doubles import StepDoubles

#: Runs looked at per status when judging whether anything can still happen.
LOOK = 1000


async def unfinished(runtime: Runtime) -> set[str]:
    """The ids of the store's runs that have not ended (read once, when an environment opens)."""
    found: set[str] = set()
    for status in UNFINISHED:
        after = None
        while True:
            page = await runtime.target.store.list(RunQuery(status=status, limit=LOOK, after=after))
            found.update(record.run_id for record in page)
            if len(page) < LOOK:
                break
            after = (page[-1].created_at, page[-1].run_id)
    return found


async def busy(runtime: Runtime, clock: VirtualClock, steps: StepDoubles, live: set[str]) -> str | None:
    """What can still happen at the clock's time (a run executing, one queued that may go, one due),
    in words; ``None`` once nothing can until the clock moves or something is sent in.

    ``live`` holds the runs that may not have ended (those that did are dropped from it). A run whose
    every executing step is in a retry's back-off waits for the clock, not for work.
    """
    store = runtime.target.store
    sleeping = clock.sleeping()
    records = []
    for run_id in list(live):
        record = await store.get(run_id)
        if record is None or record.finished:
            live.discard(run_id)
        else:
            records.append(record)
    running = [record for record in records if record.status == RunStatus.RUNNING]
    for record in running:
        if not sleeping[record.run_id] or steps.active(record.run_id):
            return f"run {record.run_id} ({record.workflow}) is executing"
    executing = Counter((record.workflow, record.concurrency_key) for record in running)
    for record in records:
        if record.status != RunStatus.QUEUED:
            continue
        workflow = runtime.registry.get(record.workflow)
        if workflow is None:
            continue  # another application's run: nothing here executes it
        cap = workflow.concurrency
        if cap is not None and executing[(workflow.name, record.concurrency_key)] >= cap:
            continue  # waits for a slot that only a run's end frees
        return f"run {record.run_id} ({record.workflow}) is queued"
    due = await store.next_wake()
    if due is not None and due <= clock.now():
        return f"a run is due since {format_timestamp(due)}"
    return None


async def next_due(runtime: Runtime, clock: VirtualClock) -> datetime | None:
    """The earliest time something falls due: a run's wake-up (a sleep's end, a signal wait's
    deadline, a retry, a delayed start), a step's retry back-off, or a schedule's tick."""
    store = runtime.target.store
    times = [await store.next_wake(), clock.next_wake()]
    for schedule in await store.list_schedules():
        if schedule.paused or runtime.registry.get(schedule.workflow) is None:
            continue
        times.append(next(ticks_after(schedule.cron, schedule.timezone, schedule.last_tick or schedule.created_at), None))
    return min((time for time in times if time is not None), default=None)


def state(record: RunRecord) -> str:
    """Where a run is, in words: ``it waits for signal 'decision' (until ...)``."""
    waiting = record.waiting_for
    until = "" if record.wake_at is None else f" until {format_timestamp(record.wake_at)}"
    if record.status == RunStatus.WAITING and waiting is not None:
        if waiting.kind == "sleep":
            return f"it sleeps{until}"
        if waiting.kind == "signal":
            return f"it waits for signal {waiting.name!r}" + (until or " (no timeout)")
        if waiting.kind == "children":
            return f"it waits for child run(s) {', '.join(waiting.run_ids or ())}"
        return f"it waits to retry (attempt {record.attempt} failed){until}"
    if record.status == RunStatus.SCHEDULED:
        return f"it is scheduled to start{until}"
    if record.finished:
        return f"it ended {record.status.value}"
    return f"it is {record.status.value}"


def outcome(record: RunRecord) -> str:
    """How a finished run ended, in words (its result or its error)."""
    if record.status == RunStatus.COMPLETED:
        return f"completed with {record.result!r}"
    if record.status == RunStatus.FAILED and record.error is not None:
        return f"failed: {record.error.code}: {record.error.message}"
    return record.status.value

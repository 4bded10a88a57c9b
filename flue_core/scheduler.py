"""Admitting the ticks of cron schedules: every process that executes runs ticks them, and each tick
runs exactly once because its time is in the idempotency key of the run it admits.

A tick is *on time* when it is handled within :data:`GRACE` of its time; older ticks were *missed*
(every process was down) and at most the schedule's ``catchup`` most recent of them run, oldest first.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flue_core.admission import admit
from flue_core.cron import ticks_after, ticks_until
from flue_core.errors import AdmissionError, FlueError
from flue_core.models import Schedule, format_timestamp, parse_timestamp
from flue_core.store import SCHEDULES

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

GRACE = timedelta(seconds=60)
#: How often a ticking process re-reads the schedules at the latest (others may have changed them).
RELOAD = 10.0
#: The catch-up warning names each skipped tick up to this many, else the first, the last and how many.
NAMED_SKIPPED = 5
#: Skipped ticks counted one by one at most, for that warning (a long downtime of a frequent schedule).
COUNTED_SKIPPED = 1000


def tick_key(schedule: str, tick: datetime) -> str:
    """The idempotency key of the run a schedule's tick admits."""
    return f"schedule:{schedule}:{format_timestamp(tick)}"


def tick_of(schedule: str, key: str | None) -> datetime | None:
    """The tick whose run has the idempotency key ``key``, if it is a tick of ``schedule``'s
    (the inverse of :func:`tick_key`); else ``None``."""
    prefix = f"schedule:{schedule}:"
    if key is None or not key.startswith(prefix):
        return None
    try:
        return parse_timestamp(key[len(prefix) :])
    except ValueError:
        return None


async def run_schedules(runtime: Runtime, interval: float) -> None:
    """Admit due ticks of every schedule of a workflow this runtime has, until cancelled."""
    store = runtime.target.store
    reload = max(RELOAD, interval)
    with runtime.changes.watch(SCHEDULES) as watch:
        while True:
            wait = reload
            try:
                now = runtime.clock.now()
                for schedule in await store.list_schedules():
                    upcoming = await tick(runtime, schedule, now)
                    if upcoming is not None:
                        wait = min(wait, max((upcoming - runtime.clock.now()).total_seconds(), 0.001))
            except Exception:
                log.exception("flue: handling schedules failed; retrying")
                wait = interval
            await watch.wait(wait)


async def tick(runtime: Runtime, schedule: Schedule, now: datetime) -> datetime | None:
    """Admit the schedule's due ticks (see the module docstring), advance it past them, and return its
    next tick after ``now`` (``None`` when it is paused or its workflow is not registered here)."""
    workflow = runtime.registry.get(schedule.workflow)
    if schedule.paused or workflow is None:
        return None
    last = schedule.last_tick or schedule.created_at
    due: list[datetime] = []  # newest first
    more = False  # whether older due ticks were left unread (all of them skipped)
    for moment in ticks_until(schedule.cron, schedule.timezone, now):
        if moment <= last:
            break
        if len(due) > schedule.catchup + 2:
            more = True
            break
        due.append(moment)
    if due:
        on_time = [moment for moment in due if now - moment <= GRACE]
        late = [moment for moment in due if now - moment > GRACE]
        missed = late[: schedule.catchup]
        for moment in sorted(on_time + missed):
            try:
                await admit(runtime, workflow, schedule.input, key=tick_key(schedule.name, moment), source="schedule")
            except AdmissionError as exc:  # refused for good (a policy, input the workflow no longer takes)
                log.warning("flue: schedule %r: the tick of %s was refused: %s", schedule.name, format_timestamp(moment), exc)
        skipped = late[schedule.catchup :]
        if skipped:  # always so when ``more``: a cron ticks at most once a minute, so few are on time
            log.warning(
                "flue: schedule %r skipped %s beyond its catchup of %d",
                schedule.name,
                _skipped_ticks(schedule, last, skipped, more),
                schedule.catchup,
            )
        await runtime.target.store.advance_schedule(schedule.name, schedule.last_tick, due[0])
    return next(ticks_after(schedule.cron, schedule.timezone, now), None)


def _skipped_ticks(schedule: Schedule, last: datetime, skipped: list[datetime], more: bool) -> str:
    """The missed ticks a catch-up skipped, for its warning: ``skipped`` (newest first) and, when
    ``more``, the unread ones between ``last`` and them. Each is named when they are few; else the
    first, the last and how many ("more than" past :data:`COUNTED_SKIPPED`)."""
    ticks = list(reversed(skipped))
    earlier: list[datetime] = []
    capped = False
    if more:
        for moment in ticks_after(schedule.cron, schedule.timezone, last):
            if moment >= ticks[0]:
                break
            if len(earlier) == COUNTED_SKIPPED:
                capped = True
                break
            earlier.append(moment)
    ticks = earlier + ticks
    if len(ticks) <= NAMED_SKIPPED:
        plural = "s" if len(ticks) > 1 else ""
        return f"{len(ticks)} missed tick{plural} ({', '.join(format_timestamp(moment) for moment in ticks)})"
    count = f"more than {len(ticks)}" if capped else str(len(ticks))
    return f"{count} missed ticks, from {format_timestamp(ticks[0])} to {format_timestamp(ticks[-1])}"


async def sync_declared_schedules(runtime: Runtime) -> None:
    """Keep the schedules declared with ``@workflow(schedule=...)`` in step with the code: create or
    update each (named after its workflow; pausing survives), and delete those whose workflow no
    longer declares one."""
    store = runtime.target.store
    stored = {schedule.name: schedule for schedule in await store.list_schedules()}
    now = runtime.clock.now()
    for workflow in runtime.registry:
        existing = stored.get(workflow.name)
        if workflow.schedule is None:
            if existing is not None and existing.declared and existing.workflow == workflow.name:
                await store.delete_schedule(workflow.name)
            continue
        if existing is not None and not existing.declared:
            log.warning("flue: schedule %r was created at run time; the one declared on the workflow is ignored", workflow.name)
            continue
        try:
            input = workflow.snapshot_input(workflow.schedule_input)
        except FlueError as exc:
            log.error("flue: the schedule declared on workflow %r has input it refuses: %s", workflow.name, exc)
            continue
        wanted = Schedule(
            name=workflow.name,
            workflow=workflow.name,
            cron=workflow.schedule,
            timezone=workflow.schedule_timezone,
            input=input,
            paused=existing.paused if existing is not None else False,
            declared=True,
            created_at=now,
            updated_at=now,
            last_tick=now,
        )
        if existing is None or _definition(existing) != _definition(wanted):
            await store.put_schedule(wanted, replace=True)


def _definition(schedule: Schedule) -> tuple:
    return (schedule.workflow, schedule.cron, schedule.timezone, schedule.input, schedule.paused, schedule.catchup)

"""Managing cron schedules at run time: ``create``, ``get``, ``list``, ``pause``, ``resume``, ``delete``;
and seeing what they do: ``next_ticks``, ``last_runs`` and both at once, ``overview``.

Every process that executes runs admits the ticks of every schedule whose workflow it has (see
:mod:`flue_core.scheduler`); schedules declared with ``@workflow(schedule=...)`` are created at
start-up and named after their workflow.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from itertools import islice
from typing import Any

from flue_core import arguments
from flue_core.arguments import WORKFLOW_NAME
from flue_core.cron import check_cron, ticks_after
from flue_core.definition import Workflow
from flue_core.errors import InvalidSchedule, ScheduleExists, ScheduleNotFound
from flue_core.models import RunRecord, Schedule
from flue_core.runtime import Runtime, current_runtime
from flue_core.schedule_overview import ScheduledRun, ScheduleOverview
from flue_core.scheduler import tick_of
from flue_core.store import RunQuery

MAX_CATCHUP = 100
#: The most ticks or runs one call shows.
MAX_SHOWN = 100
#: How many of the newest runs of a schedule's workflow ``last_runs`` looks through for the schedule's
#: own (the store lists by workflow, not by key): older runs of a schedule sharing its workflow with
#: many other starts are not found.
LOOK_BACK = 1000
_PAGE = 200


async def create(
    name: str,
    workflow: Workflow | str,
    cron: str,
    *,
    input: Any = None,
    timezone: str = "UTC",
    catchup: int = 1,
    paused: bool = False,
    runtime: Runtime | None = None,
) -> Schedule:
    """Create a schedule that admits a run of ``workflow`` with ``input`` at every tick of ``cron``
    (read in ``timezone``), from the next tick on. ``catchup``: how many ticks missed while every
    process was down run when one comes back (the most recent; 0 skips them all).

    The input is validated now, like a start's. Creating a schedule again with the same definition
    returns it; another definition under a taken name raises :class:`ScheduleExists`.
    """
    rt = current_runtime(runtime)
    _check_name(name)
    wf = rt.registry.resolve(workflow)
    check_cron(cron, timezone)
    if isinstance(catchup, bool) or not isinstance(catchup, int) or not 0 <= catchup <= MAX_CATCHUP:
        raise InvalidSchedule(f"catchup must be an integer from 0 to {MAX_CATCHUP}, not {catchup!r}.")
    if not isinstance(paused, bool):
        raise InvalidSchedule(f"paused must be true or false, not {paused!r}.")
    now = rt.clock.now()
    schedule = Schedule(
        name=name,
        workflow=wf.name,
        cron=cron,
        timezone=timezone,
        input=wf.snapshot_input(input),
        paused=paused,
        catchup=catchup,
        created_at=now,
        updated_at=now,
        last_tick=now,
    )
    stored, created = await rt.target.store.put_schedule(schedule, replace=False)
    if not created and _definition(stored) != _definition(schedule):
        raise ScheduleExists(f"A schedule named {name!r} exists with another definition.", details={"name": name})
    return stored


async def get(name: str, *, runtime: Runtime | None = None) -> Schedule:
    """The schedule called ``name``; :class:`ScheduleNotFound` if there is none."""
    schedule = await current_runtime(runtime).target.store.get_schedule(name)
    if schedule is None:
        raise ScheduleNotFound(f"No schedule is named {name!r}.", details={"name": name})
    return schedule


async def list(*, runtime: Runtime | None = None) -> builtins.list[Schedule]:
    """Every schedule, by name."""
    return await current_runtime(runtime).target.store.list_schedules()


async def next_ticks(
    schedule: Schedule | str, count: int = 5, *, runtime: Runtime | None = None
) -> builtins.list[datetime]:
    """The next ``count`` times (0 to 100) the schedule ticks at from now on, soonest first, in UTC:
    its cron expression read in its time zone (daylight saving time included). A paused schedule
    answers too, with the times it would tick at; its ``paused`` says that it does not.
    ``schedule`` is one or its name (:class:`ScheduleNotFound` if there is none)."""
    rt = current_runtime(runtime)
    count = arguments.integer("count", count, minimum=0, maximum=MAX_SHOWN)
    found = schedule if isinstance(schedule, Schedule) else await get(schedule, runtime=rt)
    return _next_ticks(found, count, rt.clock.now())


async def last_runs(
    schedule: Schedule | str, count: int = 5, *, runtime: Runtime | None = None
) -> builtins.list[RunRecord]:
    """The newest ``count`` runs (0 to 100) the schedule started, newest first: the runs of its
    workflow whose idempotency key is one of its ticks' (see :func:`flue_core.scheduler.tick_key`),
    among the newest :data:`LOOK_BACK` runs of that workflow. Pruned runs are gone; runs started
    before the schedule was moved to another workflow are not looked for.
    ``schedule`` is one or its name (:class:`ScheduleNotFound` if there is none)."""
    rt = current_runtime(runtime)
    count = arguments.integer("count", count, minimum=0, maximum=MAX_SHOWN)
    found = schedule if isinstance(schedule, Schedule) else await get(schedule, runtime=rt)
    return [record for record, _ in await _started_runs(rt, found, count)]


async def overview(
    schedule: Schedule | str, *, ticks: int = 5, runs: int | None = 5, runtime: Runtime | None = None
) -> ScheduleOverview:
    """The schedule with its next ``ticks`` tick times and its last ``runs`` runs (as
    :class:`~flue_core.schedule_overview.ScheduledRun`; ``None``: not looked up, ``last_runs`` is
    ``None``); see :func:`next_ticks` and :func:`last_runs`."""
    rt = current_runtime(runtime)
    ticks = arguments.integer("ticks", ticks, minimum=0, maximum=MAX_SHOWN)
    found = schedule if isinstance(schedule, Schedule) else await get(schedule, runtime=rt)
    started = None
    if runs is not None:
        runs = arguments.integer("runs", runs, minimum=0, maximum=MAX_SHOWN)
        started = [ScheduledRun.of(record, tick) for record, tick in await _started_runs(rt, found, runs)]
    fields = {name: getattr(found, name) for name in Schedule.model_fields}
    return ScheduleOverview(**fields, next_ticks=_next_ticks(found, ticks, rt.clock.now()), last_runs=started)


async def pause(name: str, *, runtime: Runtime | None = None) -> Schedule:
    """Stop admitting the schedule's ticks until :func:`resume` (ticks meanwhile are skipped)."""
    return await _set_paused(name, True, runtime)


async def resume(name: str, *, runtime: Runtime | None = None) -> Schedule:
    """Admit the schedule's ticks again, from the next one on."""
    return await _set_paused(name, False, runtime)


async def delete(name: str, *, runtime: Runtime | None = None) -> None:
    """Remove the schedule (the runs it started stay); :class:`ScheduleNotFound` if there is none.
    A schedule declared on a workflow comes back at the next start-up while the code declares it."""
    if not await current_runtime(runtime).target.store.delete_schedule(name):
        raise ScheduleNotFound(f"No schedule is named {name!r}.", details={"name": name})


async def _set_paused(name: str, paused: bool, runtime: Runtime | None) -> Schedule:
    rt = current_runtime(runtime)
    store = rt.target.store
    schedule = await get(name, runtime=rt)
    if schedule.paused == paused:
        return schedule
    if not paused:  # ticks of the pause are not due afterwards
        await store.advance_schedule(name, schedule.last_tick, rt.clock.now())
    changed = schedule.model_copy(update={"paused": paused, "updated_at": rt.clock.now()})
    stored, _ = await store.put_schedule(changed, replace=True)
    return stored


def _next_ticks(schedule: Schedule, count: int, now: datetime) -> builtins.list[datetime]:
    # Ticks up to last_tick are handled already: after a clock set back, the next is still after it.
    after = max(now, schedule.last_tick or schedule.created_at)
    return builtins.list(islice(ticks_after(schedule.cron, schedule.timezone, after), count))


async def _started_runs(rt: Runtime, schedule: Schedule, count: int) -> builtins.list[tuple[RunRecord, datetime]]:
    """The newest ``count`` runs of the schedule, each with its tick, paging through its workflow's runs."""
    found: builtins.list[tuple[RunRecord, datetime]] = []
    after = None
    looked = 0
    while len(found) < count and looked < LOOK_BACK:
        page = await rt.target.store.list(RunQuery(workflow=schedule.workflow, limit=_PAGE, after=after))
        looked += len(page)
        for record in page:
            tick = tick_of(schedule.name, record.key)
            if tick is not None:
                found.append((record, tick))
        if len(page) < _PAGE:
            break
        after = (page[-1].created_at, page[-1].run_id)
    return found[:count]


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not WORKFLOW_NAME.fullmatch(name):
        raise InvalidSchedule(
            f"Invalid schedule name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            details={"name": name if isinstance(name, str) else repr(name)},
        )


def _definition(schedule: Schedule) -> tuple:
    return (schedule.workflow, schedule.cron, schedule.timezone, schedule.input, schedule.catchup)

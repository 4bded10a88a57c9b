"""Managing cron schedules at run time: ``create``, ``get``, ``list``, ``pause``, ``resume``, ``delete``.

Every process that executes runs admits the ticks of every schedule whose workflow it has (see
:mod:`flue_core.scheduler`); schedules declared with ``@workflow(schedule=...)`` are created at
start-up and named after their workflow.
"""

from __future__ import annotations

import builtins
from typing import Any

from flue_core.arguments import WORKFLOW_NAME
from flue_core.cron import check_cron
from flue_core.definition import Workflow
from flue_core.errors import InvalidSchedule, ScheduleExists, ScheduleNotFound
from flue_core.models import Schedule
from flue_core.runtime import Runtime, current_runtime

MAX_CATCHUP = 100


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


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not WORKFLOW_NAME.fullmatch(name):
        raise InvalidSchedule(
            f"Invalid schedule name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            details={"name": name if isinstance(name, str) else repr(name)},
        )


def _definition(schedule: Schedule) -> tuple:
    return (schedule.workflow, schedule.cron, schedule.timezone, schedule.input, schedule.catchup)

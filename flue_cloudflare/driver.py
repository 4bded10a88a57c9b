"""What a run's object does when its alarm rings, and when the alarm must ring next.

The object is its run's only worker. When the alarm rings:

* a parked run that is due (a sleep, a delayed start, a retry's back-off, a signal's timeout) is woken;
* a run in the pool is taken — once its workflow's concurrency limit gives it a slot (a
  ``LimitObject`` per limited workflow and concurrency key: waiters go highest priority first, then
  oldest), otherwise the limit object pokes it when one is free; and then, for a run that never
  started, once its rate limit (a ``LimitObject`` per workflow and rate key, keeping the starts of
  the window) grants the start, otherwise the alarm rings when that object says there is room;
* a run still held by an executor that is gone (the isolate died or was evicted mid-run: its alarm
  rings again) is recovered exactly as adopted runs are everywhere
  (:func:`flue_core.execution.resume_adopted`): handed back with ``requeue(interrupted=True)`` to
  continue its attempt (steps replayed), or retried or failed as that function decides;
* the taken run is executed, in the alarm handler, until it ends or suspends.

The alarm is armed after every change (:func:`next_alarm`): at once for a run to take or recover, at
``wake_at`` for a parked one, never for one that waits only for a signal or its children (those arm it
when they arrive). While the handler executes the run, the alarm being handled stays armed, so that a
crash mid-run makes it ring again after the restart.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import anyio

from flue_core.execution import finish_run, resume_adopted
from flue_core.flow.limits import NO_LIMITS, Limits
from flue_core.models import RunError, RunRecord, RunStatus, utc_now
from flue_core.store import Outcome
from flue_cloudflare import calls, codec
from flue_cloudflare.changes import polled
from flue_cloudflare.run_schema import HELD, PARKED, RunState
from flue_cloudflare.errors import ValueTooLarge

if TYPE_CHECKING:
    from flue_core.runtime import Runtime
    from flue_cloudflare.run_object import RunObject

log = logging.getLogger("flue.cloudflare")

#: Seconds after which a run waiting for a concurrency slot asks again (in case a poke was lost), and
#: after which a run of a workflow this code lacks is looked at again (a deploy may bring it).
RECHECK = 60.0


def limits(runtime: Runtime, workflow: str) -> Limits:
    wf = runtime.registry.get(workflow)
    return NO_LIMITS if wf is None else wf.limits


def next_alarm(obj: RunObject) -> float | None:
    """When (epoch ms) the object's alarm must ring next for its run, or ``None``."""
    if not obj.app.execute:
        return None
    state = obj.ledger.state()
    if state is None or state.record.finished:
        return None
    now = utc_now().timestamp() * 1000
    if state.status in PARKED:
        wake_at = state.record.wake_at
        return None if wake_at is None else wake_at.timestamp() * 1000
    if state.in_pool and obj.start_at is not None:
        return obj.start_at
    if obj.waiting_for_slot or obj.app.runtime.registry.get(state.record.workflow) is None:
        return now + RECHECK * 1000
    if state.in_pool or state.status in HELD:
        return now  # to take, to execute, or to recover from an executor that is gone
    return None


def takes_at_once(obj: RunObject) -> bool:
    """Whether the event asking may execute the run now, ahead of its alarm: it is still in line,
    nothing in the object drives it yet, and its workflow has no concurrency or rate limit to wait for."""
    if not obj.app.execute or obj.driving or obj.in_alarm:
        return False
    state = obj.ledger.state()
    if state is None or not state.in_pool:
        return False
    workflow = obj.app.runtime.registry.get(state.record.workflow)
    return workflow is not None and not workflow.limits.limited


async def drive(obj: RunObject, runtime: Runtime) -> None:
    """Act on the run as its alarm rang (see the module docstring)."""
    target = obj.app.target
    me, ledger = target.worker_id, obj.ledger
    state = ledger.state()
    if state is None or state.record.finished or target.executing(obj.run_id):
        return
    if state.status in PARKED:
        if not ledger.wake(utc_now()):
            return
        await _settle(obj)
        state = ledger.state()
        assert state is not None
    workflow = runtime.registry.get(state.record.workflow)
    if workflow is None:
        log.warning("flue: run %s is of workflow %r, which this Worker lacks", obj.run_id, state.record.workflow)
        return
    if state.status in HELD and state.owner is not None and (state.owner != me or state.status == RunStatus.RUNNING):
        adopted = ledger.adopt(me, state.owner)
        await _settle(obj)
        if adopted is not None:
            pending: list[RunRecord] = []
            await resume_adopted(runtime, [adopted], pending.append)
            for record in pending:
                await _execute(obj, runtime, record.workflow)
        return
    if state.in_pool:
        if not await _limits_allow(obj, workflow.limits, state):
            return
        ledger.take(me)
        await _settle(obj)
    state = ledger.state()
    if state is not None and state.status == RunStatus.QUEUED and state.owner == me:
        await _execute(obj, runtime, state.record.workflow)


async def _limits_allow(obj: RunObject, limits: Limits, state: RunState) -> bool:
    """Whether the run in the pool may be taken now: it holds a slot of its concurrency key's limit
    (asked for if need be) and, if it never started, its rate key's limit granted the start. When
    not, the limit object pokes the run when a slot is free, or the alarm rings when the rate allows
    (the slot is kept meanwhile)."""
    record = state.record
    if limits.concurrency is not None and not state.slot:
        limit = obj.stub(calls.LIMITS, calls.slot_object(record.workflow, record.concurrency_key))
        request = {
            "runId": obj.run_id, "cap": limits.concurrency, "readyAt": codec.when(state.ready_at),
            "priority": record.priority,
        }  # fmt: skip
        if not (await calls.call(limit, "acquire", request))["r"]:
            obj.waiting_for_slot = True
            return False
        obj.ledger.hold_slot()
    obj.waiting_for_slot = False
    obj.start_at = None
    if limits.rate is not None and record.started_at is None:
        rate = obj.stub(calls.LIMITS, calls.rate_object(record.workflow, record.rate_key))
        request = {"runId": obj.run_id, "rate": limits.rate, "per": limits.per or 0}
        obj.start_at = (await calls.call(rate, "start", request))["r"]
    return obj.start_at is None


async def _settle(obj: RunObject) -> None:
    changed, obj.ledger.changed = obj.ledger.changed, set()
    await obj.settle(changed)


async def _execute(obj: RunObject, runtime: Runtime, workflow: str) -> None:
    target = obj.app.target
    assert target.executor is not None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_when_cancelled, obj)
        await _execute_here(obj, runtime, workflow)
        tasks.cancel_scope.cancel()


async def _stop_when_cancelled(obj: RunObject) -> None:
    """Cancel the execution here once a cancel is asked: the request comes in another event, which
    only marks the record (a task cancelled by another event's code would go on running for it)."""

    def asked() -> bool:
        state = obj.ledger.state()
        return state is not None and state.record.cancel_requested

    await polled(asked, math.inf)
    executor = obj.app.target.executor
    assert executor is not None
    executor.cancel(obj.run_id)


async def _execute_here(obj: RunObject, runtime: Runtime, workflow: str) -> None:
    target = obj.app.target
    assert target.executor is not None
    try:
        await target.executor.execute(obj.run_id, workflow)
    except ValueTooLarge as exc:  # the result (with the input) does not fit in the run's record
        error = RunError(code=exc.code, message=f"The run's result cannot be stored: {exc.message}")
        await finish_run(
            runtime, obj.run_id, Outcome(RunStatus.FAILED, utc_now(), error=error), held_by=target.worker_id
        )
    except Exception:
        log.exception("flue: executing run %s failed inside the runtime", obj.run_id)
        error = RunError(code="internal_error", message="The runtime failed while executing the run.")
        await finish_run(
            runtime, obj.run_id, Outcome(RunStatus.FAILED, utc_now(), error=error), held_by=target.worker_id
        )

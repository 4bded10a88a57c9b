"""Executing runs: attempts, retries, suspension, cancellation, timeouts, interruption and terminal writes.

Target-agnostic: a target decides *where* and *when* ``execute`` runs; this module decides *what*
happens to the run's record and stream.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from flue_core.admission import as_record_error
from flue_core.attempt import AttemptControl, Lost, Suspend
from flue_core.context import RunContext
from flue_core.definition import Workflow
from flue_core.errors import StoreUnavailable
from flue_core.models import RunError, RunRecord, RunStatus, WaitingFor, utc_now
from flue_core.plugins import has_implementations, notify, scope
from flue_core.recovery import Reason, after_interruption, interruption_data
from flue_core.shielding import shielded
from flue_core.snapshot import NotJSON, snapshot
from flue_core.store import Attempt, NewEvent, Outcome, Suspension

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

MAX_RETRY_DELAY = 30.0


def retry_delay(attempt: int) -> float:
    """Back-off before attempt ``attempt + 1``: 0.5 s, 1 s, 2 s... capped at 30 s."""
    return min(0.5 * 2 ** (attempt - 1), MAX_RETRY_DELAY)


class _Retry:
    """An attempt that failed and may be retried after ``delay`` seconds."""

    __slots__ = ("delay", "error")

    def __init__(self, error: RunError, delay: float) -> None:
        self.error = error
        self.delay = delay


class Executor:
    """Executes runs for one target: tracks the cancel scope of each run it is executing."""

    def __init__(self, runtime: Runtime, owner: str) -> None:
        self.runtime = runtime
        self.owner = owner
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._controls: dict[str, AttemptControl] = {}

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._scopes)

    def cancel(self, run_id: str) -> bool:
        scope = self._scopes.get(run_id)
        if scope is None:
            return False
        control = self._controls.get(run_id)
        if control is not None:
            control.cancel_requested = True
        scope.cancel()
        return True

    async def execute(self, run_id: str, workflow: str, attempt: Attempt | None = None) -> None:
        """Execute a queued run owned by this executor until it ends, is suspended or is handed back;
        with ``attempt``, the run claimed for it at admission (:meth:`RunStore.admit_claimed`)."""
        if attempt is None:
            store = self.runtime.target.store
            wf = self.runtime.registry.get(workflow)
            # State transitions are shielded: a shutdown arriving mid-write must not leave the record
            # half-way; the shutdown is seen at the next unshielded await instead.
            attempt = await shielded(store.claim(run_id, self.owner, limit=None if wf is None else wf.concurrency))
            if attempt is None:
                return  # cancelled while queued, adopted by another worker, or over its workflow's limit
        with scope(self.runtime.pm.hook.flue_execution_scope, run=attempt.record, resumed=attempt.resumed):
            await self._attempt(attempt)

    async def _attempt(self, attempt: Attempt) -> None:
        run_id = attempt.record.run_id
        outcome = await self._execute(attempt.record, attempt.next_index, attempt.resumed)
        if outcome is None:
            return  # suspended, or lost to another worker
        if isinstance(outcome, _Retry):
            await shielded(self._retry_later(attempt.record, outcome))
        else:
            await shielded(self._finish(run_id, outcome))

    async def _execute(self, record: RunRecord, next_index: int, resumed: bool) -> Outcome | _Retry | None:
        runtime = self.runtime
        store = runtime.target.store
        wf = runtime.registry.get(record.workflow)
        if wf is None:  # only adopted runs can name a workflow this process lacks; adopt() filters them
            error = RunError(code="workflow_not_found", message=f"Workflow {record.workflow!r} is not registered.")
            return Outcome(RunStatus.FAILED, utc_now(), error=error)
        replays = record.attempt > 1 or resumed or record.rerun_of is not None
        steps = await store.load_steps(record.run_id) if replays else {}
        control = AttemptControl(runtime, record, self.owner, next_index, resumed=resumed)
        ctx = RunContext(runtime, workflow=wf, input=None, control=control, steps=steps)
        if resumed:
            control.write("run_resume", {"workflow": wf.name, "attempt": record.attempt})
        else:
            control.write("run_start", {"workflow": wf.name, "attempt": record.attempt})
        if has_implementations(runtime.pm.hook.flue_run_started):
            await notify(runtime.pm.hook.flue_run_started, run=record)
        try:
            ctx.input = wf.parse_input(record.input)
        except ValidationError as exc:
            control.close()
            return Outcome(RunStatus.FAILED, utc_now(), error=as_record_error(exc, "invalid_input"))
        scope = anyio.CancelScope()
        control.cancel = scope.cancel
        self._scopes[record.run_id] = scope
        self._controls[record.run_id] = control
        if record.cancel_requested:
            scope.cancel()
        try:
            # No deadline scope for the common workflow without a timeout: each scope costs the run.
            deadline = anyio.move_on_after(wf.timeout) if wf.timeout is not None else nullcontext()
            with scope, deadline:
                if wf.takes_input:
                    value = await wf.fn(ctx, ctx.input)
                else:
                    value = await wf.fn(ctx)
            if control.suspended or control.lost:
                return await self._suspended(control)
            if control.store_lost:  # the workflow caught a store failure: its outcome cannot stand
                raise StoreUnavailable(f"The store failed while run {record.run_id} was executing.")
            if scope.cancel_called:
                return Outcome(RunStatus.CANCELLED, utc_now())
            if isinstance(deadline, anyio.CancelScope) and deadline.cancelled_caught:
                error = RunError(code="run_timeout", message=f"The execution exceeded its {wf.timeout} s timeout.")
                return self._failed_or_retry(control, record, wf, error)
            try:
                result = snapshot(value, "result")
            except NotJSON as exc:
                error = RunError(code="output_not_json", message=f"The workflow returned a value JSON cannot carry: {exc}")
                return Outcome(RunStatus.FAILED, utc_now(), error=error)
            return Outcome(RunStatus.COMPLETED, utc_now(), result=result)
        except (Suspend, Lost):
            return await self._suspended(control)
        except anyio.get_cancelled_exc_class():
            # The executor itself is stopping (shutdown): hand the run back or end it, then go on stopping.
            with anyio.CancelScope(shield=True):
                await self._interrupted(control, record, wf)
            raise
        except BaseException as exc:
            if control.suspended or control.lost:  # Suspend inside an exception group, say
                return await self._suspended(control)
            if not isinstance(exc, Exception):
                raise
            if control.store_lost or _store_failure(exc):
                # The store, not the workflow, failed: the target takes the run up again once the
                # store answers (an interruption, see resume_adopted), so nothing is written here.
                control.close()
                raise StoreUnavailable(f"The store failed while run {record.run_id} was executing.") from exc
            error = as_record_error(exc, "workflow_error", traceback=traceback.format_exc())
            return self._failed_or_retry(control, record, wf, error)
        finally:
            control.close()
            self._scopes.pop(record.run_id, None)
            self._controls.pop(record.run_id, None)

    async def _suspended(self, control: AttemptControl) -> None:
        if control.suspended and has_implementations(self.runtime.pm.hook.flue_run_waiting):
            await notify(self.runtime.pm.hook.flue_run_waiting, run=control.record, error=None)
        return None

    def _failed_or_retry(self, control: AttemptControl, record: RunRecord, wf: Workflow, error: RunError) -> Outcome | _Retry:
        if record.attempt < wf.max_attempts and not control.cancel_requested:
            delay = retry_delay(record.attempt)
            control.write("run_retry", {"attempt": record.attempt, "error": error.model_dump(exclude_none=True), "delay": delay})
            return _Retry(error, delay)
        return Outcome(RunStatus.FAILED, utc_now(), error=error)

    async def _retry_later(self, record: RunRecord, retry: _Retry) -> None:
        """Park a failed attempt until its back-off has passed: no slot is held meanwhile."""
        store = self.runtime.target.store
        wake_at = self.runtime.clock.now() + timedelta(seconds=retry.delay)
        parked = await store.suspend(record.run_id, self.owner, Suspension(WaitingFor(kind="retry"), wake_at))
        if parked is not None and not parked.suspended:  # a cancel was asked meanwhile
            await self._finish(record.run_id, Outcome(RunStatus.CANCELLED, utc_now()))
        elif parked is not None and has_implementations(self.runtime.pm.hook.flue_run_waiting):
            await notify(self.runtime.pm.hook.flue_run_waiting, run=parked.record, error=retry.error)

    async def _interrupted(self, control: AttemptControl, record: RunRecord, wf: Workflow) -> None:
        """Hand back a run whose execution the executor's stop cut short (for the next process to
        resume), or end it as :func:`after_interruption` decides."""
        store = self.runtime.target.store
        if control.suspended or control.lost:
            return
        record = control.record
        if control.cancel_requested:
            control.close()
            await self._finish(record.run_id, Outcome(RunStatus.CANCELLED, utc_now()))
            return
        decision = after_interruption(wf, record, "stopped")
        if decision.announced:
            control.write("run_interrupted", interruption_data(record, decision.action, "stopped"))
        control.close()
        if decision.action == "fail":
            await self._finish(record.run_id, Outcome(RunStatus.FAILED, utc_now(), error=decision.error))
            return
        await store.flush()
        await store.requeue(record.run_id, None, held_by=self.owner, interrupted=decision.action == "resume")

    async def _finish(self, run_id: str, outcome: Outcome) -> None:
        await finish_run(self.runtime, run_id, outcome, held_by=self.owner)


async def finish_run(
    runtime: Runtime, run_id: str, outcome: Outcome, *, held_by: str | None = None, only_from: tuple[RunStatus, ...] | None = None
) -> RunRecord | None:
    """End a run in the store and, when this call ended it, tell ``flue_run_finished``."""
    final = await runtime.target.store.finish(run_id, outcome, held_by=held_by, only_from=only_from)
    hook = runtime.pm.hook.flue_run_finished
    if final is not None and final.status == outcome.status and final.ended_at == outcome.ended_at and has_implementations(hook):
        await notify(hook, run=final)
    return final


async def resume_adopted(
    runtime: Runtime, records: list[RunRecord], schedule: Callable[[RunRecord], None], reason: Reason = "died"
) -> None:
    """Continue runs taken over from workers that died (or from this worker's own execution that a
    store failure cut short, ``reason="store"``): never-started runs are scheduled; interrupted runs
    resume, are retried or fail as :func:`after_interruption` decides, each with a
    ``run_interrupted`` event saying so."""
    store = runtime.target.store
    owner = runtime.target.worker_id
    for record in records:
        if record.status == RunStatus.QUEUED:
            schedule(record)
            continue
        if record.cancel_requested:
            await finish_run(runtime, record.run_id, Outcome(RunStatus.CANCELLED, utc_now()), held_by=owner)
            continue
        decision = after_interruption(runtime.registry.get(record.workflow), record, reason)
        if decision.announced:
            page = await store.read(record.run_id, None, 0)
            if page is not None and not page.closed:
                data = interruption_data(record, decision.action, reason)
                store.append(record.run_id, (NewEvent(page.tail + 1, "run_interrupted", data, utc_now()),))
                await store.flush()
        if decision.action == "fail":
            outcome = Outcome(RunStatus.FAILED, utc_now(), error=decision.error)
            await finish_run(runtime, record.run_id, outcome, held_by=owner)
            continue
        requeued = await store.requeue(record.run_id, owner, held_by=owner, interrupted=decision.action == "resume")
        if requeued is not None:
            schedule(requeued)


def _store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is (or, in an exception group, holds only) a store failure."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_store_failure(inner) for inner in exc.exceptions)
    return False

"""Executing runs: attempts, retries, cancellation, timeouts, interruption and terminal writes.

Target-agnostic: a target decides *where* and *when* ``execute`` runs; this module decides *what*
happens to the run's record and stream.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from flue_core.admission import as_record_error
from flue_core.context import AttemptControl, RunContext
from flue_core.models import RunError, RunRecord, RunStatus, utc_now
from flue_core.plugins import has_implementations, notify
from flue_core.snapshot import NotJSON, snapshot
from flue_core.store import NewEvent, Outcome

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

MAX_RETRY_DELAY = 30.0


def retry_delay(attempt: int) -> float:
    """Back-off before attempt ``attempt + 1``: 0.5 s, 1 s, 2 s... capped at 30 s."""
    return min(0.5 * 2 ** (attempt - 1), MAX_RETRY_DELAY)


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

    async def execute(self, run_id: str) -> None:
        """Run attempts of a queued run owned by this executor until it ends or is handed back."""
        store = self.runtime.target.store
        while True:
            # State transitions are shielded: a shutdown arriving mid-write must not leave the
            # record half-way; the shutdown is seen at the next unshielded await instead.
            with anyio.CancelScope(shield=True):
                attempt = await store.claim(run_id, self.owner)
            if attempt is None:
                return  # cancelled while queued, or adopted by another worker
            record = attempt.record
            outcome, retry = await self._attempt(record, attempt.next_index)
            if retry is not None:
                with anyio.CancelScope(shield=True):
                    await store.requeue(run_id, self.owner, held_by=self.owner)
                await anyio.sleep(retry)
                continue
            with anyio.CancelScope(shield=True):
                await self._finish(run_id, outcome)
            return

    async def _attempt(self, record: RunRecord, next_index: int) -> tuple[Outcome, float | None]:
        runtime = self.runtime
        store = runtime.target.store
        wf = runtime.registry.get(record.workflow)
        if wf is None:  # only adopted runs can name a workflow this process lacks; adopt() filters them
            error = RunError(code="workflow_not_found", message=f"Workflow {record.workflow!r} is not registered.")
            return Outcome(RunStatus.FAILED, utc_now(), error=error), None
        steps = await store.load_steps(record.run_id) if record.attempt > 1 else {}
        control = AttemptControl(runtime, record.run_id, next_index)
        ctx = RunContext(
            runtime,
            run_id=record.run_id,
            workflow=wf.name,
            input=None,
            attempt=record.attempt,
            key=record.key,
            control=control,
            steps=steps,
        )
        control.write("run_start", {"workflow": wf.name, "attempt": record.attempt})
        if has_implementations(runtime.pm.hook.flue_run_started):
            await notify(runtime.pm.hook.flue_run_started, run=record)
        try:
            ctx.input = wf.parse_input(record.input)
        except ValidationError as exc:
            control.close()
            return Outcome(RunStatus.FAILED, utc_now(), error=as_record_error(exc, "invalid_input")), None
        scope = anyio.CancelScope()
        self._scopes[record.run_id] = scope
        self._controls[record.run_id] = control
        if record.cancel_requested:
            control.cancel_requested = True
            scope.cancel()
        try:
            with scope, anyio.move_on_after(wf.timeout) as deadline:
                if wf.takes_input:
                    value = await wf.fn(ctx, ctx.input)
                else:
                    value = await wf.fn(ctx)
            if scope.cancel_called:
                return Outcome(RunStatus.CANCELLED, utc_now()), None
            if deadline.cancelled_caught:
                error = RunError(code="run_timeout", message=f"The attempt exceeded its {wf.timeout} s timeout.")
                return self._failed_or_retry(control, record, wf.max_attempts, error)
            try:
                result = snapshot(value, "result")
            except NotJSON as exc:
                error = RunError(code="output_not_json", message=f"The workflow returned a value JSON cannot carry: {exc}")
                return Outcome(RunStatus.FAILED, utc_now(), error=error), None
            return Outcome(RunStatus.COMPLETED, utc_now(), result=result), None
        except anyio.get_cancelled_exc_class():
            # The executor itself is stopping (shutdown): hand the run back or end it, then go on stopping.
            with anyio.CancelScope(shield=True):
                await self._interrupted(control, record, wf.max_attempts)
            raise
        except Exception as exc:
            error = as_record_error(exc, "workflow_error", traceback=traceback.format_exc())
            return self._failed_or_retry(control, record, wf.max_attempts, error)
        finally:
            control.close()
            self._scopes.pop(record.run_id, None)
            self._controls.pop(record.run_id, None)

    def _failed_or_retry(
        self, control: AttemptControl, record: RunRecord, max_attempts: int, error: RunError
    ) -> tuple[Outcome, float | None]:
        if record.attempt < max_attempts and not control.cancel_requested:
            delay = retry_delay(record.attempt)
            control.write("run_retry", {"attempt": record.attempt, "error": error.model_dump(exclude_none=True), "delay": delay})
            return Outcome(RunStatus.FAILED, utc_now(), error=error), delay
        return Outcome(RunStatus.FAILED, utc_now(), error=error), None

    async def _interrupted(self, control: AttemptControl, record: RunRecord, max_attempts: int) -> None:
        store = self.runtime.target.store
        if record.attempt < max_attempts:
            control.write("run_interrupted", {"attempt": record.attempt, "action": "retry"})
            control.close()
            await store.flush()
            await store.requeue(record.run_id, None, held_by=self.owner)
            return
        control.close()
        await self._finish(record.run_id, interrupted_outcome("The process executing the run stopped."))

    async def _finish(self, run_id: str, outcome: Outcome) -> None:
        final = await self.runtime.target.store.finish(run_id, outcome, held_by=self.owner)
        hook = self.runtime.pm.hook.flue_run_finished
        if final is not None and final.status == outcome.status and has_implementations(hook):
            await notify(hook, run=final)


def interrupted_outcome(message: str) -> Outcome:
    return Outcome(RunStatus.FAILED, utc_now(), error=RunError(code="run_interrupted", message=message))


async def resume_adopted(runtime: Runtime, records: list[RunRecord], schedule: Callable[[RunRecord], None]) -> None:
    """Continue runs adopted from dead workers: never-started runs are scheduled; interrupted runs
    are re-executed when attempts remain (steps replay), otherwise failed with ``run_interrupted``."""
    store = runtime.target.store
    for record in records:
        if record.status == RunStatus.QUEUED:
            schedule(record)
            continue
        wf = runtime.registry.get(record.workflow)
        if wf is not None and record.attempt < wf.max_attempts and not record.cancel_requested:
            page = await store.read(record.run_id, None, 0)
            if page is not None and not page.closed:
                event = NewEvent(page.tail + 1, "run_interrupted", {"attempt": record.attempt, "action": "retry"}, utc_now())
                store.append(record.run_id, (event,))
                await store.flush()
            requeued = await store.requeue(record.run_id, runtime.target.worker_id, held_by=runtime.target.worker_id)
            if requeued is not None:
                schedule(requeued)
            continue
        outcome = (
            Outcome(RunStatus.CANCELLED, utc_now())
            if record.cancel_requested
            else interrupted_outcome("The process executing the run died.")
        )
        final = await store.finish(record.run_id, outcome, held_by=runtime.target.worker_id)
        if final is not None and final.status == outcome.status and has_implementations(runtime.pm.hook.flue_run_finished):
            await notify(runtime.pm.hook.flue_run_finished, run=final)

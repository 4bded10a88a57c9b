"""Replaying one run: check what comes before its code (its workflow, its input, its mailbox), then run
the code under :class:`~flue_core.replay.engine.ReplayCalls` and judge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from flue_core.call_keys import positioned
from flue_core.context import RunContext
from flue_core.errors import validation_errors
from flue_core.replay.engine import RUN_LIMIT, ReplayCalls, adapter
from flue_core.replay.report import Divergence, RunReplay

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.discovery import WorkflowRegistry
    from flue_core.models import RunRecord
    from flue_core.replay.history import RunHistory


async def replay_run(history: RunHistory, registry: WorkflowRegistry, *, limit: float = RUN_LIMIT) -> RunReplay:
    """Replay ``history`` against the workflows of ``registry`` (the new code): never executing a
    step, sending a signal, starting a run or writing anything. ``limit``: real seconds the run's code
    may take before the run is reported as not checked through."""
    record = history.record
    calls = sum(1 for key, _ in history.calls if positioned(key))
    workflow = registry.get(record.workflow)
    if workflow is None:
        return _refused(record, calls, "workflow_missing", f"the new code has no workflow named {record.workflow!r}")
    try:
        value = workflow.parse_input(record.input)
    except ValidationError as exc:
        return _refused(
            record, calls, "input_invalid",
            f"the run's stored input does not validate against the new input type: {exc.error_count()} problem(s)",
            errors=validation_errors(exc),
        )  # fmt: skip
    refused = _mailbox_refused(history, workflow, calls)
    if refused is not None:
        return refused
    replay = ReplayCalls(history, workflow, registry)
    ctx = RunContext(None, workflow=workflow, input=value, control=_Silent(record), steps={}, calls=replay)  # type: ignore[arg-type]
    ctx.log = _Silent(record)  # type: ignore[assignment]
    returned = False
    raised: BaseException | None = None

    async def body() -> None:
        nonlocal returned, raised
        try:
            await (workflow.fn(ctx, value) if workflow.takes_input else workflow.fn(ctx))
            returned = True
        except Exception as exc:  # the new code raised (into its own hands first, as in a real run)
            raised = exc
        finally:
            replay.done = True
            replay.stopped.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(body)
        with anyio.move_on_after(limit) as timer:
            await replay.settle()
        tasks.cancel_scope.cancel()
    if timer.cancelled_caught and replay.divergence is None:
        replay.incomplete = replay.incomplete or f"the new code reached no durable call in {limit} s (it waits on something else)"
    replay.verdict(returned, raised)
    return RunReplay(
        record.run_id,
        record.workflow,
        record.status,
        calls,
        replay.replayed,
        replay.divergence,
        replay.incomplete,
        tuple(replay.old_paths),
        tuple(replay.new_paths),
    )


def _mailbox_refused(history: RunHistory, workflow: Workflow, calls: int) -> RunReplay | None:
    """A divergence when a signal waiting in the run's mailbox no longer validates against the model
    the workflow declares for it (the run would take it and fail)."""
    for signal in history.signals:
        model = workflow.signals.get(signal.name)
        if model is None:
            continue
        try:
            adapter(model).validate_python(signal.data)
        except ValidationError as exc:
            return _refused(
                history.record, calls, "signal_invalid",
                f"signal {signal.name!r} ({signal.signal_id}) waiting in the run's mailbox does not validate against"
                f" {getattr(model, '__name__', model)!r}: {exc.error_count()} problem(s)",
                errors=validation_errors(exc),
            )  # fmt: skip
    return None


def _refused(record: RunRecord, calls: int, kind: str, message: str, **details: Any) -> RunReplay:
    divergence = Divergence(record.run_id, record.workflow, kind, message, details=details)
    return RunReplay(record.run_id, record.workflow, record.status, calls, 0, divergence)


class _Silent:
    """A replayed run's events and logs go nowhere: the check writes nothing."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.cancel_requested = record.cancel_requested

    def write(self, type: str, data: dict[str, Any]) -> None:
        pass

    def debug(self, message: str, **attributes: Any) -> None:
        pass

    info = warning = error = debug

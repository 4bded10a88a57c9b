"""What becomes of a run whose execution was interrupted: resumed, retried or failed, and what its
``run_interrupted`` event says.

An interruption is not a failure of the workflow: the process executing it died or stopped, its lease
ran out, or its store failed under it. The executor (a stop past its grace) and the targets (runs
adopted from dead workers, runs whose store failed) all decide here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flue_core.models import RunError, RunRecord

if TYPE_CHECKING:
    from flue_core.definition import Workflow

RECOVERY_LIMIT = "recovery_limit"
#: Why an execution was interrupted, as ``run_interrupted`` events say: its process ``stopped``
#: (graceful shutdown past its grace), ``died`` (or stopped renewing its lease), or its ``store``
#: failed under it.
Reason = Literal["stopped", "died", "store"]
_MESSAGES = {
    "stopped": "The process executing the run stopped.",
    "died": "The process executing the run died.",
    "store": "The store failed while the run was executing.",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of an interrupted run: ``action``, the ``error`` it ends with when it fails, and
    whether a ``run_interrupted`` event says so (``announced``: not for a run failed the way it was
    before recoveries existed, whose ``run_end`` alone tells)."""

    action: Literal["resume", "retry", "fail"]
    error: RunError | None = None
    announced: bool = True


def after_interruption(wf: Workflow | None, record: RunRecord, reason: Reason) -> Decision:
    """What becomes of a run whose execution was interrupted.

    An interruption is not a failure of the workflow: the same attempt ``resume``s by replay while
    the run has had fewer than its workflow's ``max_recoveries`` interruptions, and then fails with
    ``recovery_limit``. With ``max_recoveries=0`` an interruption counts as a failed attempt (the
    behaviour before recoveries existed): a ``retry`` while ``retries`` allow, else it fails with
    ``run_interrupted``. A run of a workflow this process lacks cannot go on here: it fails.
    """
    if wf is None:
        error = RunError(code="workflow_not_found", message=f"Workflow {record.workflow!r} is not registered.")
        return Decision("fail", error, announced=False)
    if wf.max_recoveries > 0:
        if record.recoveries < wf.max_recoveries:
            return Decision("resume")
        message = (
            f"The run was interrupted {record.recoveries + 1} times, more than its workflow's max_recoveries"
            f" ({wf.max_recoveries}): a process executing it crashes or stops every time."
        )
        return Decision("fail", RunError(code=RECOVERY_LIMIT, message=message))
    if record.attempt < wf.max_attempts:
        return Decision("retry")
    return Decision("fail", RunError(code="run_interrupted", message=_MESSAGES[reason]), announced=False)


def interruption_data(record: RunRecord, action: str, reason: Reason) -> dict[str, Any]:
    """The ``data`` of a ``run_interrupted`` event."""
    recoveries = record.recoveries + 1 if action == "resume" else record.recoveries
    return {"attempt": record.attempt, "action": action, "reason": reason, "recoveries": recoveries}



"""Flue: start workflow runs from any host code and get real runs — validated, identified,
persisted, streamed and inspectable — on pluggable targets.

The public face is small::

    from flue_core import Runtime, RunContext, workflow, workflows, runs

Everything else lives in modules named for what they hold.
"""

from flue_core import runs, workflows
from flue_core.context import RunContext
from flue_core.definition import Workflow, workflow
from flue_core.errors import (
    AdmissionDenied,
    AdmissionError,
    FlueError,
    IdempotencyKeyConflict,
    InputNotSerializable,
    InvalidCursor,
    InvalidInput,
    InvalidKey,
    InvalidOffset,
    InvalidQuery,
    RateLimited,
    RunCancelled,
    RunFailed,
    RunNotFinished,
    RunNotFound,
    RuntimeNotRunning,
    SchedulingFailed,
    UnexpectedInput,
    WorkflowNotFound,
)
from flue_core.hookspecs import hookimpl
from flue_core.models import Event, RunError, RunPage, RunReceipt, RunRecord, RunStatus
from flue_core.runtime import Runtime

__all__ = [
    "AdmissionDenied",
    "AdmissionError",
    "Event",
    "FlueError",
    "IdempotencyKeyConflict",
    "InputNotSerializable",
    "InvalidCursor",
    "InvalidInput",
    "InvalidKey",
    "InvalidOffset",
    "InvalidQuery",
    "RateLimited",
    "RunCancelled",
    "RunContext",
    "RunError",
    "RunFailed",
    "RunNotFinished",
    "RunNotFound",
    "RunPage",
    "RunReceipt",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "RuntimeNotRunning",
    "SchedulingFailed",
    "UnexpectedInput",
    "Workflow",
    "WorkflowNotFound",
    "hookimpl",
    "runs",
    "workflow",
    "workflows",
]

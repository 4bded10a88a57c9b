"""Flue: start workflow runs from any host code and get real runs — validated, identified,
persisted, streamed and inspectable — on pluggable targets.

The public face is small::

    from flue_core import Runtime, RunContext, workflow, workflows, runs

Everything else lives in modules named for what they hold.
"""

from flue_core import runs, schedules, workflows
from flue_core.context import RunContext
from flue_core.definition import Workflow, workflow
from flue_core.errors import (
    AdmissionDenied,
    AdmissionError,
    FlueError,
    IdempotencyKeyConflict,
    InputNotSerializable,
    InvalidCursor,
    InvalidFlowKey,
    InvalidInput,
    InvalidKey,
    InvalidOffset,
    InvalidPriority,
    InvalidQuery,
    InvalidSchedule,
    InvalidSignal,
    RateLimited,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunNotFinished,
    RunNotFound,
    RuntimeNotRunning,
    ScheduleExists,
    ScheduleNotFound,
    SchedulingFailed,
    SignalTimeout,
    StepTimeout,
    UnexpectedInput,
    WorkflowNotFound,
)
from flue_core.flow.policy import RateLimit
from flue_core.hookspecs import hookimpl
from flue_core.models import (
    Event,
    QueuedFor,
    RunError,
    RunPage,
    RunReceipt,
    RunRecord,
    RunStatus,
    Schedule,
    SignalReceipt,
    WaitingFor,
)
from flue_core.runtime import Runtime

__all__ = [
    "AdmissionDenied",
    "AdmissionError",
    "Event",
    "FlueError",
    "IdempotencyKeyConflict",
    "InputNotSerializable",
    "InvalidCursor",
    "InvalidFlowKey",
    "InvalidInput",
    "InvalidKey",
    "InvalidOffset",
    "InvalidPriority",
    "InvalidQuery",
    "InvalidSchedule",
    "InvalidSignal",
    "QueuedFor",
    "RateLimit",
    "RateLimited",
    "RunCancelled",
    "RunContext",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunNotFinished",
    "RunNotFound",
    "RunPage",
    "RunReceipt",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "RuntimeNotRunning",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchedulingFailed",
    "SignalReceipt",
    "SignalTimeout",
    "StepTimeout",
    "UnexpectedInput",
    "WaitingFor",
    "Workflow",
    "WorkflowNotFound",
    "hookimpl",
    "runs",
    "schedules",
    "workflow",
    "workflows",
]

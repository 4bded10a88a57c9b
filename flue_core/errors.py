"""The error tree. Every error raised to users is a :class:`FlueError` with a stable ``code``.

The ``code`` is the machine-readable identity of an error: HTTP error envelopes carry it, tests assert
it, and it never changes once published. ``status`` is the HTTP status the HTTP surface answers with.
"""

from __future__ import annotations

from typing import Any


class FlueError(Exception):
    """Root of every error Flue raises on purpose."""

    code: str = "flue_error"
    status: int = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON error envelope body: ``{"code", "message", "details"?}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def validation_errors(exc: Any) -> list[dict[str, Any]]:
    """The ``details["errors"]`` list of a pydantic ``ValidationError``: location, message and type of each."""
    return [
        {"loc": [str(part) for part in error["loc"]], "message": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


# -- configuration ----------------------------------------------------------------------------------


class ConfigurationError(FlueError):
    """The application or a plugin is set up wrongly; raised at start-up, not per run."""

    code = "configuration_error"


class InvalidWorkflowDefinition(ConfigurationError):
    code = "invalid_workflow_definition"


class DuplicateWorkflow(ConfigurationError):
    code = "duplicate_workflow"


class TargetNotFound(ConfigurationError):
    code = "target_not_found"


class AmbiguousTarget(ConfigurationError):
    code = "target_ambiguous"


class UnsupportedSchemaVersion(ConfigurationError):
    code = "schema_version_unsupported"


class UnsupportedHistory(UnsupportedSchemaVersion):
    """Run histories a replay check (``flue replay``) cannot read: a file that is not what ``flue runs
    export`` writes, or of another format version, or a store written in a layout this version does
    not read."""

    code = "history_unsupported"


class RuntimeNotRunning(FlueError):
    """``start()`` or ``runs.*`` was called while no :class:`~flue_core.Runtime` is open."""

    code = "runtime_not_running"
    status = 503


class SyncCallOnEventLoop(FlueError, RuntimeError):
    """A ``*_sync`` entry was called on the runtime's own event loop thread, where it would block the
    loop it waits for; ``await`` the async function there instead."""

    code = "sync_call_on_event_loop"


# -- admission --------------------------------------------------------------------------------------


class AdmissionError(FlueError):
    """Admission refused the run. Unless stated otherwise, no run exists afterwards."""

    code = "admission_failed"
    status = 400


class WorkflowNotFound(AdmissionError):
    code = "workflow_not_found"
    status = 404


class InvalidInput(AdmissionError):
    """The input does not match the workflow's input model. ``details["errors"]`` lists each problem."""

    code = "invalid_input"
    status = 422


class UnexpectedInput(InvalidInput):
    """Input was given to a workflow that takes none."""

    code = "unexpected_input"


class InputNotSerializable(InvalidInput):
    """The input holds a value JSON cannot carry (bytes, sets, NaN or infinities, strings that are not
    valid Unicode, objects, cycles, nesting deeper than ``flue_core.limits.MAX_DEPTH``...).
    ``details["path"]`` locates it and ``details["reason"]`` says what is wrong."""

    code = "input_not_json"


class AdmissionDenied(AdmissionError):
    """An admission policy hook refused the run (authorisation, quota...)."""

    code = "admission_denied"
    status = 403


class RateLimited(AdmissionDenied):
    code = "rate_limited"
    status = 429


class InvalidKey(AdmissionError):
    """The idempotency key is not a non-empty string of valid Unicode of at most 256 characters."""

    code = "invalid_key"


class InvalidFlowKey(AdmissionError):
    """A workflow's ``concurrency_key``, rate-limit ``key`` or ``debounce_key`` could not be computed
    from the run's input: the key function raised, or gave something other than a non-empty string
    (at most 256 characters of valid Unicode), or the input has no such field. Nothing is stored."""

    code = "invalid_flow_key"
    status = 422


class InvalidPriority(AdmissionError):
    """A start's ``priority`` is not an integer from -100 to 100. Nothing is stored."""

    code = "invalid_priority"


class IdempotencyKeyConflict(AdmissionError):
    """The key is already bound to a run of this workflow whose input differs."""

    code = "idempotency_key_conflict"
    status = 409


class RunIdConflict(AdmissionError):
    """A ``flue_generate_run_id`` implementation returned the id of a run that already exists."""

    code = "run_id_conflict"
    status = 409


class SchedulingFailed(AdmissionError):
    """The run was persisted but could not be handed to an executor.

    The run exists and is ended as ``failed`` with a closed stream; ``details["run_id"]`` names it.
    """

    code = "scheduling_failed"
    status = 503


# -- runs and streams -------------------------------------------------------------------------------


class RunNotFound(FlueError):
    code = "run_not_found"
    status = 404


class RunFinished(FlueError):
    """The run has ended, so it cannot take what was asked: a signal, or a cancel over HTTP or from
    ``flue cancel`` of a run that ended otherwise than cancelled. ``details["status"]`` is how it ended."""

    code = "run_finished"
    status = 409


class InvalidSignal(FlueError):
    """A signal's name or data is malformed, or its data does not match the model the workflow
    declares for that signal name (``details["errors"]``)."""

    code = "invalid_signal"
    status = 422


class SignalTimeout(FlueError, TimeoutError):
    """Raised in a workflow by ``ctx.wait_for_signal(name, timeout=...)`` when no signal came in time."""

    code = "signal_timeout"
    status = 504


class InvalidSchedule(FlueError):
    """A schedule's cron expression, time zone, name, workflow or input is not acceptable, or a
    delayed start's time is (``start(..., at=/delay=)``)."""

    code = "invalid_schedule"
    status = 400


class ScheduleNotFound(FlueError):
    code = "schedule_not_found"
    status = 404


class ScheduleExists(FlueError):
    """A schedule of that name exists already (with another definition)."""

    code = "schedule_exists"
    status = 409


class InvalidCursor(FlueError):
    code = "invalid_cursor"
    status = 400


class InvalidQuery(FlueError):
    """A listing or read was asked with an argument out of range or of the wrong kind."""

    code = "invalid_query"
    status = 400


class InvalidOffset(FlueError):
    code = "invalid_offset"
    status = 400


class RunNotFinished(FlueError):
    """``runs.result()`` gave up waiting; the run is still going."""

    code = "result_timeout"
    status = 504


class RunFailed(FlueError):
    """``runs.result()`` on a run that ended ``failed``; ``details`` carries the run's error.

    Over HTTP (``?wait=result``) it is 424 Failed Dependency: the request depended on the run and the
    run failed, which is not a failure of the server (500).
    """

    code = "run_failed"
    status = 424


class RunCancelled(FlueError):
    """``runs.result()`` on a run that ended ``cancelled``."""

    code = "run_cancelled"
    status = 409


class CancelDenied(FlueError):
    """The caller may read the run but was not granted cancelling it (``authorize_run_cancel`` /
    ``flue_authorize_run_cancel``; cancelling is closed by default)."""

    code = "run_cancel_denied"
    status = 403


class SignalDenied(FlueError):
    """The caller may read the run but was not granted signalling it (``authorize_run_signal`` /
    ``flue_authorize_run_signal``; signalling over HTTP is closed by default)."""

    code = "run_signal_denied"
    status = 403


class RerunDenied(FlueError):
    """The caller may read the run but was not granted re-running it (``authorize_run_rerun`` /
    ``flue_authorize_run_rerun``; re-running over HTTP is closed by default)."""

    code = "run_rerun_denied"
    status = 403


class RunUnfinished(FlueError):
    """``runs.rerun()`` of a run that has not ended: only a finished run can be re-run."""

    code = "run_unfinished"
    status = 409


class InvalidRerun(FlueError):
    """``runs.rerun()`` was given a ``from_step`` that is no step name, or names no step the run stored."""

    code = "invalid_rerun"
    status = 400


class StepError(FlueError):
    """A durable call was misused: a malformed step name or policy, a step result JSON cannot carry,
    a sleep of no finite length, a wait for a run that is not this run's child."""

    code = "step_error"


class StepTimeout(StepError, TimeoutError):
    """One call of a step's function took longer than the step's ``timeout`` (after its retries,
    this fails the attempt)."""

    code = "step_timeout"


class InvalidEvent(FlueError):
    """``ctx.emit`` got a reserved or malformed type, or data JSON cannot carry."""

    code = "invalid_event"


class StoreUnavailable(FlueError):
    """The backend could not be reached or failed an operation."""

    code = "store_unavailable"
    status = 503


# -- durable streams --------------------------------------------------------------------------------


class StreamNotFound(FlueError):
    """No stream at this path: never created, deleted, or expired."""

    code = "stream_not_found"
    status = 404


class StreamGone(FlueError):
    """The stream was deleted (or expired) while forks still read its data: its own URL answers 410
    until the last fork is gone."""

    code = "stream_gone"
    status = 410


class InvalidStreamRequest(FlueError):
    """A stream write is malformed: a header value out of its syntax, an empty append, data the
    stream's content type refuses (invalid JSON, an empty JSON array), a fork point past the source's end.
    ``details["header"]`` names the header at fault, when one is."""

    code = "invalid_stream_request"
    status = 400


class StreamConflict(FlueError):
    """The stream exists with another configuration, or its path is held by a deleted stream whose
    forks still need it, or the fork source is such a deleted stream."""

    code = "stream_conflict"
    status = 409


class ContentTypeMismatch(StreamConflict):
    """Data sent with a content type other than the stream's (or a fork asking for another type)."""

    code = "content_type_mismatch"


class StreamClosed(StreamConflict):
    """An append to a closed stream. ``details["next_offset"]`` is the stream's final offset."""

    code = "stream_closed"


class StreamSeqConflict(StreamConflict):
    """``Stream-Seq`` not greater (byte-wise) than the last one the stream accepted."""

    code = "stream_seq_conflict"


class ProducerSequenceGap(StreamConflict):
    """An idempotent producer skipped sequence numbers: ``details["expected_seq"]`` is the next one the
    stream accepts, ``details["received_seq"]`` the one sent."""

    code = "producer_sequence_gap"


class StaleProducerEpoch(FlueError):
    """A producer wrote with an epoch older than the stream has seen (a fenced-off "zombie").
    ``details["current_epoch"]`` is the stream's epoch for that producer."""

    code = "producer_epoch_stale"
    status = 403


# -- errors rebuilt from what they say (an HTTP envelope, an answer from another process) -------------


def error_classes() -> dict[str, type[FlueError]]:
    """Every ``FlueError`` class imported so far, by ``code`` (import the modules of the errors you
    expect, such as ``flue_core.http.errors``, before asking)."""
    found: dict[str, type[FlueError]] = {}
    pending: list[type[FlueError]] = [FlueError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def make_error(
    cls: type[FlueError],
    message: str,
    *,
    details: dict[str, Any] | None = None,
    code: str | None = None,
    status: int | None = None,
) -> FlueError:
    """An instance of ``cls`` carrying ``message`` and ``details`` (and ``code`` / ``status`` when
    given), made without calling ``cls.__init__``: subclasses may take other arguments (the HTTP
    errors' ``MethodNotAllowed(method, allowed)``, ``InternalError()``), and an error received or
    reworded here is rebuilt from what it says, not from what its constructor wants. Attributes a
    subclass's own ``__init__`` would set (``HttpError.headers``) are therefore absent."""
    error = cls.__new__(cls)
    FlueError.__init__(error, message, details=details)
    if code is not None:
        error.code = code
    if status is not None:
        error.status = status
    return error

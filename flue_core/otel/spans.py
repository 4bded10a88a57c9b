"""The spans of admissions, executions and step calls, and the attribute names they carry.

Every span is made current while its work runs, so spans that workflow code makes (an HTTP client's,
a database driver's) nest under the step or execution that made them.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from flue_core.errors import AdmissionDenied, IdempotencyKeyConflict
from flue_core.models import RunError, RunRecord, format_timestamp

if TYPE_CHECKING:
    from flue_core.admission import AdmissionRequest
    from flue_core.otel.instruments import Instruments

WORKFLOW = "flue.workflow"
RUN_ID = "flue.run.id"
RUN_ATTEMPT = "flue.run.attempt"
RUN_STATUS = "flue.run.status"
RUN_PARENT_ID = "flue.run.parent_id"
RUN_WAITING_FOR = "flue.run.waiting_for"
RUN_WAKE_AT = "flue.run.wake_at"
ADMISSION_SOURCE = "flue.admission.source"
ADMISSION_OUTCOME = "flue.admission.outcome"
EXECUTION_RESUMED = "flue.execution.resumed"
EXECUTION_INTERRUPTED = "flue.execution.interrupted"
RUN_RECOVERIES = "flue.run.recoveries"
STEP_NAME = "flue.step.name"
STEP_KEY = "flue.step.key"
STEP_TRY = "flue.step.try"
ERROR_CODE = "flue.error.code"
ERROR_TYPE = "error.type"  # OpenTelemetry's general attribute, read by most back-ends


def run_attributes(run: RunRecord) -> dict[str, str | int]:
    return {RUN_ID: run.run_id, WORKFLOW: run.workflow, RUN_ATTEMPT: run.attempt}


def record_run_error(span: trace.Span, error: RunError) -> None:
    """Mark ``span`` failed with a run's error, as an ``exception`` event of OpenTelemetry's shape:
    the exception itself was caught (and turned into the record's error) by the executor."""
    span.set_attribute(ERROR_CODE, error.code)
    span.set_attribute(ERROR_TYPE, error.type or error.code)
    attributes = {"exception.type": error.type or error.code, "exception.message": error.message}
    if error.traceback:
        attributes["exception.stacktrace"] = error.traceback
    span.add_event("exception", attributes)
    span.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"))


def admission_outcome(error: BaseException | None, admitted: bool) -> str:
    """``admitted``, ``duplicate`` (an idempotent repeat), ``refused`` (a policy), ``conflict`` (a key
    taken with other input) or ``failed`` (scheduling, the store, a plugin)."""
    if error is None:
        return "admitted" if admitted else "duplicate"
    if isinstance(error, AdmissionDenied):
        return "refused"
    if isinstance(error, IdempotencyKeyConflict):
        return "conflict"
    return "failed"


class _CurrentSpan:
    """Starts a span, makes it current in the task that enters it, and ends it on exit."""

    span: trace.Span
    _token: Token[context.Context]

    def _start(self, span: trace.Span, base: context.Context | None = None) -> None:
        self.span = span
        self._context = trace.set_span_in_context(span, base)
        self._token = context.attach(self._context)

    def _end(self, error: BaseException | None) -> None:
        if isinstance(error, Exception):  # not the BaseExceptions that unwind a run (cancellation, suspension)
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        context.detach(self._token)
        self.span.end()


class AdmissionSpan(_CurrentSpan):
    """``admit {workflow}``, a producer span: current while the run is admitted, so the carrier
    captured then holds it and the run's executions continue the trace as its children.

    The sampler decides here, once per run: a run whose admission is not sampled is not traced in any
    execution either. The admission's context is kept in ``recent`` (by run id) for an execution in
    this process, which then needs not extract it from the carrier."""

    current: ContextVar[AdmissionSpan | None] = ContextVar("flue_otel_admission", default=None)

    def __init__(
        self, tracer: trace.Tracer, instruments: Instruments, request: AdmissionRequest, recent: RecentContexts
    ) -> None:
        self._tracer = tracer
        self._instruments = instruments
        self._request = request
        self._recent = recent
        self._admitted = False

    def __enter__(self) -> AdmissionSpan:
        request = self._request
        attributes: dict[str, str] = {WORKFLOW: request.workflow.name, ADMISSION_SOURCE: request.source}
        if request.parent_run_id is not None:
            attributes[RUN_PARENT_ID] = request.parent_run_id
        self._start(self._tracer.start_span(f"admit {request.workflow.name}", kind=SpanKind.PRODUCER, attributes=attributes))
        self._current = AdmissionSpan.current.set(self)
        return self

    def admitted(self, run: RunRecord) -> None:
        self._admitted = True
        if self.span.is_recording():
            self.span.set_attributes({RUN_ID: run.run_id, RUN_STATUS: run.status.value})
        self._recent.keep(run.run_id, self._context)

    def repeated(self, run: RunRecord) -> None:
        """An idempotent repeat: the key named ``run``, admitted before (the caller gets its receipt)."""
        if self.span.is_recording():
            self.span.set_attributes({RUN_ID: run.run_id, RUN_STATUS: run.status.value})

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        outcome = admission_outcome(error, self._admitted)
        if self.span.is_recording():
            self.span.set_attribute(ADMISSION_OUTCOME, outcome)
        self._instruments.admitted(self._request.workflow.name, self._request.source, outcome)
        AdmissionSpan.current.reset(self._current)
        self._end(error)


class RecentContexts:
    """The contexts of the latest admissions in this process, by run id, at most ``limit`` (the oldest
    forgotten first: a run executed elsewhere, or never, is not kept for long)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._contexts: dict[str, context.Context] = {}

    def keep(self, run_id: str, ctx: context.Context) -> None:
        self._contexts[run_id] = ctx
        if len(self._contexts) > self._limit:
            del self._contexts[next(iter(self._contexts))]

    def take(self, run_id: str) -> context.Context | None:
        return self._contexts.pop(run_id, None)


def unsampled(ctx: context.Context) -> bool:
    """Whether ``ctx`` holds a trace whose sampler said no (a valid, unsampled span context)."""
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context.is_valid and not span_context.trace_flags.sampled


class UntracedExecution:
    """An execution of a run whose admission was not sampled: no span, but the admission's context
    is current while it runs, so spans the workflow makes follow the same decision and the caller's
    baggage is there."""

    def __init__(self, parent: context.Context) -> None:
        self._parent = parent

    def __enter__(self) -> UntracedExecution:
        self._token = context.attach(self._parent)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        context.detach(self._token)


class ExecutionSpan(_CurrentSpan):
    """``execute {workflow}``, a consumer span for one execution of a run in this process, the child
    of the span that was current at admission (carried in ``run.carrier``), in whichever process.

    How the execution ended is told by the run's notifications inside it (:meth:`waiting`,
    :meth:`finished`); an exit with an error without either is the process stopping mid-run.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        run: RunRecord,
        resumed: bool,
        executing: dict[str, ExecutionSpan],
        parent: context.Context | None = None,
    ) -> None:
        self._tracer = tracer
        self._run = run
        self._resumed = resumed
        self._executing = executing  # where the run's notifications find this execution
        self._parent = parent  # the admission's context, extracted from the carrier (None: a trace of its own)
        self._told = False

    def __enter__(self) -> ExecutionSpan:
        run = self._run
        parent = self._parent if self._parent is not None else context.Context()
        attributes = {**run_attributes(run), EXECUTION_RESUMED: self._resumed}
        if run.parent_run_id is not None:
            attributes[RUN_PARENT_ID] = run.parent_run_id
        if run.recoveries:  # it was interrupted (a crash, say): the span of that execution never ended
            attributes[RUN_RECOVERIES] = run.recoveries
        span = self._tracer.start_span(f"execute {run.workflow}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
        self._start(span, parent)  # the caller's baggage comes along with its trace
        self._executing[run.run_id] = self
        return self

    def waiting(self, run: RunRecord, error: RunError | None) -> None:
        self._told = True
        self.span.set_attribute(RUN_STATUS, run.status.value)
        if run.waiting_for is not None:
            self.span.set_attribute(RUN_WAITING_FOR, run.waiting_for.kind)
        if run.wake_at is not None:
            self.span.set_attribute(RUN_WAKE_AT, format_timestamp(run.wake_at))
        if error is not None:
            record_run_error(self.span, error)

    def finished(self, run: RunRecord) -> None:
        self._told = True
        self.span.set_attribute(RUN_STATUS, run.status.value)
        if run.error is not None:
            record_run_error(self.span, run.error)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._executing.pop(self._run.run_id, None)
        if error is not None and not self._told:
            self.span.set_attribute(EXECUTION_INTERRUPTED, True)
            self.span.set_status(Status(StatusCode.ERROR, "The process executing the run stopped."))
        self._end(error)


class StepSpan(_CurrentSpan):
    """``step {name}``: one call of a step's function (one span per try), a child of the execution."""

    def __init__(self, tracer: trace.Tracer, run: RunRecord, step: str, try_number: int) -> None:
        self._tracer = tracer
        self._run = run
        self._step = step
        self._try = try_number

    def __enter__(self) -> StepSpan:
        name = self._step.partition("#")[0]  # step names hold no '#': the key's suffix counts occurrences
        attributes = {**run_attributes(self._run), STEP_NAME: name, STEP_KEY: self._step, STEP_TRY: self._try}
        self._start(self._tracer.start_span(f"step {name}", attributes=attributes))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._end(error)

"""OpenTelemetry traces and metrics for Flue runs, as a plugin built on the hooks.

Register it like any plugin; it uses the global tracer and meter providers unless given others::

    from flue_core.otel import FlueTelemetry

    runtime = Runtime(workflows, plugins=[FlueTelemetry()])

Spans: ``admit {workflow}`` for each admission, ``execute {workflow}`` for each execution of a run
(an attempt that waits and resumes has one execution per stretch, each a child of the admission) and
``step {name}`` for each call of a step's function. The context current at admission is carried with
the run (``RunRecord.carrier``, W3C trace context through the global propagator), so every execution
continues the caller's trace, in whichever process or host it runs. The sampler decides once per
run, at admission: a run whose admission is not sampled is traced in none of its executions or steps
(its trace context is still current in them). See ``docs/telemetry.md``.

Needs the ``otel`` extra (``opentelemetry-api`` and ``-sdk``); nothing else in Flue imports this module.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

try:
    from opentelemetry import context, metrics, propagate, trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("flue_core.otel needs OpenTelemetry: pip install 'flue[otel]'") from exc

from flue_core.hookspecs import hookimpl
from flue_core.otel.instruments import Instruments, QueueDepth
from flue_core.otel.spans import AdmissionSpan, ExecutionSpan, RecentContexts, StepSpan, UntracedExecution, unsampled

if TYPE_CHECKING:
    from flue_core.admission import AdmissionRequest
    from flue_core.models import RunError, RunRecord
    from flue_core.runtime import Runtime

__all__ = ["FlueTelemetry"]

SCOPE = "flue"


def _version() -> str | None:
    try:
        return metadata.version("flue")
    except metadata.PackageNotFoundError:
        return None


class FlueTelemetry:
    """The plugin: traces and metrics of admissions, executions and steps.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (set them with the SDK,
    or let ``opentelemetry-instrument`` do it). Queue depth (``flue.queue.depth``) is counted in the
    store at most every ``queue_interval`` seconds, up to ``queue_limit`` runs per status; one
    instance serves one open runtime at a time.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        queue_interval: float = 30.0,
        queue_limit: int = 10_000,
    ) -> None:
        if not queue_interval >= 0 or not (isinstance(queue_limit, int) and queue_limit >= 1):
            raise ValueError("queue_interval must be >= 0 seconds and queue_limit an integer >= 1.")
        version = _version()
        self._tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        self._queue = QueueDepth(queue_interval, queue_limit)
        self._instruments = Instruments(metrics.get_meter(SCOPE, version, meter_provider=meter_provider), self._queue)
        self._executions: dict[str, ExecutionSpan] = {}
        self._admitted = RecentContexts()  # this process's admissions: their executions here need not extract

    # -- the runtime served -------------------------------------------------------------------------

    @hookimpl
    def flue_runtime_opened(self, runtime: Runtime) -> None:
        self._queue.runtime = runtime

    @hookimpl
    def flue_runtime_closing(self, runtime: Runtime) -> None:
        if self._queue.runtime is runtime:
            self._queue.runtime = None

    # -- admission ----------------------------------------------------------------------------------

    @hookimpl
    def flue_admission_scope(self, request: AdmissionRequest) -> AdmissionSpan:
        return AdmissionSpan(self._tracer, self._instruments, request, self._admitted)

    @hookimpl
    def flue_capture_carrier(self, request: AdmissionRequest) -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the admission span is current: executions become its children
        return carrier or None

    @hookimpl
    def flue_run_admitted(self, run: RunRecord) -> None:
        admission = AdmissionSpan.current.get()
        if admission is not None:
            admission.admitted(run)

    @hookimpl
    def flue_admission_repeated(self, run: RunRecord) -> None:
        admission = AdmissionSpan.current.get()
        if admission is not None:
            admission.repeated(run)

    # -- executions and steps -----------------------------------------------------------------------

    @hookimpl
    def flue_execution_scope(self, run: RunRecord, resumed: bool) -> ExecutionSpan | UntracedExecution:
        # Executions are traced exactly when their admission was (see AdmissionSpan).
        parent = self._admitted.take(run.run_id)
        if parent is None and run.carrier:
            parent = propagate.extract(run.carrier)
        if parent is not None and unsampled(parent):
            return UntracedExecution(parent)
        return ExecutionSpan(self._tracer, run, resumed, self._executions, parent)

    @hookimpl
    def flue_run_waiting(self, run: RunRecord, error: RunError | None) -> None:
        execution = self._executions.get(run.run_id)
        if execution is not None:
            execution.waiting(run, error)

    @hookimpl
    def flue_run_finished(self, run: RunRecord) -> None:
        self._instruments.run_finished(run)
        execution = self._executions.get(run.run_id)
        if execution is not None:  # else it ended outside an execution here (a cancel, a recovery)
            execution.finished(run)

    @hookimpl
    def flue_step_scope(self, run: RunRecord, step: str, try_number: int) -> StepSpan | None:
        if unsampled(context.get_current()):  # inside an execution that is not traced: neither is the step
            return None
        return StepSpan(self._tracer, run, step, try_number)

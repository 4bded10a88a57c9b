"""OpenTelemetry spans of runs executed in this process, on a real SDK with an in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

import otel_app
from flue_core import AdmissionDenied, RunStatus, Runtime, hookimpl, runs, schedules, workflows
from flue_core.models import utc_now
from flue_core.otel import FlueTelemetry
from flue_core.otel import spans as keys
from flue_core.scheduler import tick
from otel_support import Telemetry, parent_id

pytestmark = pytest.mark.anyio


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    otel_app.app_tracer_provider = telemetry.tracer_provider
    yield telemetry
    telemetry.shutdown()


def runtime(telemetry: Telemetry, tmp_path, *policies: object) -> Runtime:
    return Runtime(otel_app.WORKFLOWS, target=otel_app.target(str(tmp_path / "flue.db")), plugins=[telemetry.plugin, *policies])


async def test_a_run_continues_the_callers_trace_through_admission_execution_and_steps(telemetry, tmp_path):
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with runtime(telemetry, tmp_path):
        with tracer.start_as_current_span("caller"):
            receipt = await workflows.start(otel_app.fetch, input={"url": "https://example.test"})
        assert await runs.result(receipt.run_id, timeout=10) == {"url": "https://example.test", "status": 200}
    caller, admit = telemetry.one("caller"), telemetry.one("admit otel-fetch")
    execute, step, work = telemetry.one("execute otel-fetch"), telemetry.one("step fetch"), telemetry.one("app fetch")
    trace_id = caller.context.trace_id
    assert {span.context.trace_id for span in (admit, execute, step, work)} == {trace_id}
    assert parent_id(admit) == caller.context.span_id
    assert parent_id(execute) == admit.context.span_id
    assert parent_id(step) == execute.context.span_id
    assert parent_id(work) == step.context.span_id  # workflow code's own spans nest under the step
    assert (admit.kind, execute.kind, step.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL)
    assert dict(admit.attributes) == {
        keys.WORKFLOW: "otel-fetch",
        keys.ADMISSION_SOURCE: "python",
        keys.ADMISSION_OUTCOME: "admitted",
        keys.RUN_ID: receipt.run_id,
        keys.RUN_STATUS: "queued",
    }
    assert dict(execute.attributes) == {
        keys.RUN_ID: receipt.run_id,
        keys.WORKFLOW: "otel-fetch",
        keys.RUN_ATTEMPT: 1,
        keys.EXECUTION_RESUMED: False,
        keys.RUN_STATUS: "completed",
    }
    assert step.attributes[keys.STEP_NAME] == "fetch" and step.attributes[keys.STEP_TRY] == 1
    assert step.attributes[keys.RUN_ID] == receipt.run_id
    assert execute.status.status_code == StatusCode.UNSET


async def test_a_failing_run_marks_its_step_and_execution_failed_with_the_exception(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path):
        receipt = await workflows.start(otel_app.failing)
        record = await runs.wait(receipt.run_id, timeout=10)
    assert record.status == RunStatus.FAILED
    step, execute = telemetry.one("step call upstream"), telemetry.one("execute otel-failing")
    assert step.status.status_code == StatusCode.ERROR
    [step_exception] = [event for event in step.events if event.name == "exception"]
    assert step_exception.attributes["exception.type"] == "ValueError"
    assert execute.status.status_code == StatusCode.ERROR
    assert execute.attributes[keys.RUN_STATUS] == "failed"
    assert execute.attributes[keys.ERROR_CODE] == "workflow_error"
    [exception] = [event for event in execute.events if event.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "the upstream said no"
    assert "raise ValueError" in exception.attributes["exception.stacktrace"]


async def test_an_attempt_that_is_retried_ends_its_execution_failed_and_waiting_for_the_retry(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path):
        receipt = await workflows.start(otel_app.flaky)
        assert await runs.result(receipt.run_id, timeout=10) == 2
    admit = telemetry.one("admit otel-flaky")
    first, second = telemetry.named("execute otel-flaky")
    assert (first.attributes[keys.RUN_ATTEMPT], second.attributes[keys.RUN_ATTEMPT]) == (1, 2)
    assert first.attributes[keys.RUN_STATUS] == "waiting" and first.attributes[keys.RUN_WAITING_FOR] == "retry"
    assert first.status.status_code == StatusCode.ERROR
    messages = [event.attributes["exception.message"] for event in first.events if event.name == "exception"]
    assert messages == ["first attempt fails"]
    assert second.attributes[keys.RUN_STATUS] == "completed" and second.status.status_code == StatusCode.UNSET
    assert parent_id(first) == parent_id(second) == admit.context.span_id


async def test_a_sleeping_run_has_one_execution_span_per_stretch_in_the_same_trace(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path):
        receipt = await workflows.start(otel_app.sleeper, input={"seconds": 0.3})
        assert await runs.result(receipt.run_id, timeout=10) == "rested"
    admit = telemetry.one("admit otel-sleeper")
    first, second = telemetry.named("execute otel-sleeper")
    assert parent_id(first) == parent_id(second) == admit.context.span_id
    assert first.context.trace_id == second.context.trace_id == admit.context.trace_id
    assert first.attributes[keys.RUN_STATUS] == "waiting" and first.attributes[keys.RUN_WAITING_FOR] == "sleep"
    assert keys.RUN_WAKE_AT in first.attributes and first.attributes[keys.EXECUTION_RESUMED] is False
    assert second.attributes[keys.EXECUTION_RESUMED] is True and second.attributes[keys.RUN_STATUS] == "completed"
    assert first.attributes[keys.RUN_ATTEMPT] == second.attributes[keys.RUN_ATTEMPT] == 1
    assert first.status.status_code == second.status.status_code == StatusCode.UNSET
    # Each step ran once, in the stretch that reached it; the resumed stretch replayed "before" without a span.
    assert parent_id(telemetry.one("step before")) == first.context.span_id
    assert parent_id(telemetry.one("step after")) == second.context.span_id
    assert second.start_time - first.end_time >= 0.25e9  # nothing executes while it sleeps


async def wait_until_busy(run_id: str) -> None:
    with anyio.fail_after(10):
        async for event in runs.events(run_id, follow=True):
            if event.type == "busy":
                return


async def test_a_cancelled_run_ends_its_execution_cancelled(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path):
        receipt = await workflows.start(otel_app.busy)
        await wait_until_busy(receipt.run_id)
        assert (await runs.cancel(receipt.run_id)).status == RunStatus.CANCELLED
    execute = telemetry.one("execute otel-busy")
    assert execute.attributes[keys.RUN_STATUS] == "cancelled"
    assert execute.status.status_code == StatusCode.UNSET and keys.EXECUTION_INTERRUPTED not in execute.attributes


async def test_an_execution_cut_short_by_the_process_stopping_is_marked_interrupted(telemetry, tmp_path):
    target = otel_app.target(str(tmp_path / "flue.db"))
    target.shutdown_grace = 0.1
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
        receipt = await workflows.start(otel_app.busy)
        await wait_until_busy(receipt.run_id)
    execute = telemetry.one("execute otel-busy")  # handed back for a retry: no status is known
    assert execute.attributes[keys.EXECUTION_INTERRUPTED] is True and keys.RUN_STATUS not in execute.attributes
    assert execute.status.status_code == StatusCode.ERROR


async def test_a_child_run_continues_its_parents_trace(telemetry, tmp_path):
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with runtime(telemetry, tmp_path):
        with tracer.start_as_current_span("caller"):
            receipt = await workflows.start(otel_app.parent)
        assert await runs.result(receipt.run_id, timeout=10) == 42
    caller = telemetry.one("caller")
    parent_first = telemetry.named("execute otel-parent")[0]  # then it waits for the child, and resumes
    child_admit, child_execute = telemetry.one("admit otel-child"), telemetry.one("execute otel-child")
    assert {span.context.trace_id for span in telemetry.spans} == {caller.context.trace_id}
    assert parent_id(child_admit) == parent_first.context.span_id
    assert child_admit.attributes[keys.ADMISSION_SOURCE] == "child"
    assert child_admit.attributes[keys.RUN_PARENT_ID] == receipt.run_id
    assert parent_id(child_execute) == child_admit.context.span_id
    assert child_execute.attributes[keys.RUN_PARENT_ID] == receipt.run_id


async def test_a_refused_admission_ends_its_span_with_the_refusal_and_nothing_executes(telemetry, tmp_path):
    class Closed:
        @hookimpl
        def flue_check_admission(self, request):
            raise AdmissionDenied("closed for maintenance")

    async with runtime(telemetry, tmp_path, Closed()):
        with pytest.raises(AdmissionDenied):
            await workflows.start(otel_app.fetch, input={"url": "x"})
    admit = telemetry.one("admit otel-fetch")
    assert admit.attributes[keys.ADMISSION_OUTCOME] == "refused" and keys.RUN_ID not in admit.attributes
    assert admit.status.status_code == StatusCode.ERROR
    assert [event.attributes["exception.type"] for event in admit.events] == ["flue_core.errors.AdmissionDenied"]
    assert telemetry.named("execute otel-fetch") == []


async def test_a_schedules_tick_starts_a_trace_of_its_own(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path) as rt:
        await schedules.create("every-minute", otel_app.child, "* * * * *", input=1)
        schedule = await schedules.get("every-minute")
        await tick(rt, schedule, utc_now() + timedelta(minutes=1, seconds=1))
        with anyio.fail_after(10):
            while not (await runs.list(workflow="otel-child", status="completed")).runs:
                await anyio.sleep(0.05)
    admit = telemetry.named("admit otel-child")[0]
    assert admit.attributes[keys.ADMISSION_SOURCE] == "schedule" and admit.parent is None
    execute = telemetry.named("execute otel-child")[0]
    assert execute.context.trace_id == admit.context.trace_id and parent_id(execute) == admit.context.span_id


async def test_a_repeated_admission_with_the_same_key_names_the_run_it_found(telemetry, tmp_path):
    async with runtime(telemetry, tmp_path):
        first = await workflows.start(otel_app.fetch, input={"url": "a"}, key="once")
        again = await workflows.start(otel_app.fetch, input={"url": "a"}, key="once")
    assert again.run_id == first.run_id
    repeat = telemetry.named("admit otel-fetch")[1]
    assert repeat.attributes[keys.ADMISSION_OUTCOME] == "duplicate"
    assert repeat.attributes[keys.RUN_ID] == first.run_id  # the redelivering caller's trace finds the run


async def test_a_run_whose_admission_is_not_sampled_is_traced_in_no_execution_or_step(tmp_path):
    class AdmissionsOnlyOff(Sampler):
        """Drops admissions and samples everything else, parent or not: executions must follow their admission."""

        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
            decision = Decision.DROP if name.startswith("admit ") else Decision.RECORD_AND_SAMPLE
            return SamplingResult(decision)

        def get_description(self) -> str:
            return "admissions off"

    telemetry = Telemetry()
    telemetry.tracer_provider = TracerProvider(sampler=AdmissionsOnlyOff())
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(telemetry.exporter))
    plugin = FlueTelemetry(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    async with Runtime(otel_app.WORKFLOWS, target=otel_app.target(str(tmp_path / "flue.db")), plugins=[plugin]):
        receipt = await workflows.start(otel_app.fetch, input={"url": "https://example.test"})
        assert await runs.result(receipt.run_id, timeout=10) == {"url": "https://example.test", "status": 200}
    assert [span.name for span in telemetry.spans if span.name.startswith(("admit", "execute", "step"))] == []



async def test_the_execution_resuming_an_interrupted_run_counts_its_recoveries(telemetry, tmp_path):
    target = otel_app.target(str(tmp_path / "flue.db"))
    target.shutdown_grace = 0.1
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
        receipt = await workflows.start(otel_app.busy)
        await wait_until_busy(receipt.run_id)
    async with Runtime(otel_app.WORKFLOWS, target=otel_app.target(str(tmp_path / "flue.db")), plugins=[telemetry.plugin]):
        with anyio.fail_after(10):  # resumed by this process, busy again
            seen = 0
            async for event in runs.events(receipt.run_id, follow=True):
                seen += event.type == "busy"
                if seen == 2:
                    break
        await runs.cancel(receipt.run_id)
    first, resumed = telemetry.named("execute otel-busy")
    assert keys.RUN_RECOVERIES not in first.attributes
    assert resumed.attributes[keys.RUN_RECOVERIES] == 1 and resumed.attributes[keys.EXECUTION_RESUMED] is True

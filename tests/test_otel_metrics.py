"""OpenTelemetry metrics of admissions, runs and the queue, read with the SDK's in-memory reader."""

from __future__ import annotations

import anyio
import pytest

import otel_app
from flue_core import AdmissionDenied, IdempotencyKeyConflict, Runtime, hookimpl, runs, workflows
from flue_core.otel import spans as keys
from otel_support import Telemetry, attrs

pytestmark = pytest.mark.anyio


def admissions(workflow: str, source: str, outcome: str) -> frozenset:
    return attrs({keys.WORKFLOW: workflow, keys.ADMISSION_SOURCE: source, keys.ADMISSION_OUTCOME: outcome})


def pending(workflow: str, status: str) -> frozenset:
    return attrs({keys.WORKFLOW: workflow, keys.RUN_STATUS: status})


async def test_admissions_are_counted_by_workflow_source_and_outcome(tmp_path):
    class NoChildren:
        @hookimpl
        def flue_check_admission(self, request):
            if request.workflow.name == "otel-child":
                raise AdmissionDenied("no children today")

    telemetry = Telemetry()
    target = otel_app.target(str(tmp_path / "flue.db"), execute=False)
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin, NoChildren()]):
        await workflows.start(otel_app.fetch, input={"url": "a"})
        await workflows.start(otel_app.fetch, input={"url": "b"}, key="once")
        await workflows.start(otel_app.fetch, input={"url": "b"}, key="once")
        with pytest.raises(IdempotencyKeyConflict):
            await workflows.start(otel_app.fetch, input={"url": "c"}, key="once")
        with pytest.raises(AdmissionDenied):
            await workflows.start(otel_app.child, input=1)
    points = telemetry.points("flue.admissions")
    assert {key: point.value for key, point in points.items()} == {
        admissions("otel-fetch", "python", "admitted"): 2,
        admissions("otel-fetch", "python", "duplicate"): 1,
        admissions("otel-fetch", "python", "conflict"): 1,
        admissions("otel-child", "python", "refused"): 1,
    }


async def test_run_durations_and_failures_are_recorded_by_workflow_status_and_error_code(tmp_path):
    telemetry = Telemetry()
    async with Runtime(otel_app.WORKFLOWS, target=otel_app.target(str(tmp_path / "flue.db")), plugins=[telemetry.plugin]):
        started = [
            await workflows.start(otel_app.fetch, input={"url": "a"}),
            await workflows.start(otel_app.fetch, input={"url": "b"}),
            await workflows.start(otel_app.failing),
            await workflows.start(otel_app.slow),
        ]
        for receipt in started:
            await runs.wait(receipt.run_id, timeout=10)
    durations = telemetry.points("flue.run.duration")
    assert set(durations) == {
        pending("otel-fetch", "completed"),
        pending("otel-failing", "failed"),
        pending("otel-slow", "failed"),
    }
    assert durations[pending("otel-fetch", "completed")].count == 2
    assert 0.1 <= durations[pending("otel-slow", "failed")].sum < 5  # its 0.1 s timeout, in seconds
    failures = telemetry.points("flue.run.failures")
    assert {key: point.value for key, point in failures.items()} == {
        attrs({keys.WORKFLOW: "otel-failing", keys.ERROR_CODE: "workflow_error"}): 1,
        attrs({keys.WORKFLOW: "otel-slow", keys.ERROR_CODE: "run_timeout"}): 1,
    }


async def test_queue_depth_counts_the_stores_pending_runs_by_workflow_and_status(tmp_path):
    telemetry = Telemetry(queue_interval=0)
    target = otel_app.target(str(tmp_path / "flue.db"), execute=False)  # admits only: runs stay queued
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
        queued = [await workflows.start(otel_app.fetch, input={"url": str(n)}) for n in range(3)]
        await workflows.start(otel_app.child, input=1, delay=3600)
        depth = await anyio.to_thread.run_sync(telemetry.points, "flue.queue.depth")  # as a reader's thread would
        values = {key: point.value for key, point in depth.items()}
        assert values[pending("otel-fetch", "queued")] == 3
        assert values[pending("otel-child", "scheduled")] == 1
        assert values[pending("otel-sleeper", "waiting")] == 0  # every workflow is reported, idle ones as 0
        assert len(values) == len(otel_app.WORKFLOWS) * 3

        await runs.cancel(queued[0].run_id)
        depth = await anyio.to_thread.run_sync(telemetry.points, "flue.queue.depth")
        assert depth[pending("otel-fetch", "queued")].value == 2


async def test_queue_depth_is_counted_at_most_every_queue_interval(tmp_path):
    telemetry = Telemetry(queue_interval=3600)
    target = otel_app.target(str(tmp_path / "flue.db"), execute=False)
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
        await workflows.start(otel_app.fetch, input={"url": "a"})
        first = await anyio.to_thread.run_sync(telemetry.points, "flue.queue.depth")
        await workflows.start(otel_app.fetch, input={"url": "b"})
        again = await anyio.to_thread.run_sync(telemetry.points, "flue.queue.depth")
    assert first[pending("otel-fetch", "queued")].value == again[pending("otel-fetch", "queued")].value == 1


async def test_a_collection_on_the_event_loop_thread_reports_the_last_counts_without_blocking(tmp_path):
    telemetry = Telemetry(queue_interval=0)
    target = otel_app.target(str(tmp_path / "flue.db"), execute=False)
    async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
        await workflows.start(otel_app.fetch, input={"url": "a"})
        assert telemetry.points("flue.queue.depth") == {}  # nothing counted yet: the loop is not waited on
        await anyio.to_thread.run_sync(telemetry.points, "flue.queue.depth")
        await workflows.start(otel_app.fetch, input={"url": "b"})
        on_loop = telemetry.points("flue.queue.depth")
    assert on_loop[pending("otel-fetch", "queued")].value == 1  # the thread's count, reported again

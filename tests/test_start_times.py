"""A start time that is not in the future (``at=`` that has passed, ``delay=0``) starts the run at once,
as without one: ``queued``, no ``startAt``; from Python and over HTTP (docs/starting-runs.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.errors import InvalidSchedule
from http_served import local_target, served

pytestmark = pytest.mark.anyio


@workflow(name="start-times", http=True)
async def report(ctx: RunContext) -> str:
    return "done"


async def first_event_data(runtime: Runtime, run_id: str) -> dict:
    async for event in runs.events(run_id, runtime=runtime):
        assert event.type == "run_queued"
        return event.data
    raise AssertionError("no run_queued event")


@pytest.mark.parametrize(
    "when",
    [
        pytest.param({"at": datetime.now(UTC) - timedelta(days=400)}, id="at-long-past"),
        pytest.param({"at": datetime.now(UTC) - timedelta(milliseconds=1)}, id="at-just-past"),
        pytest.param({"delay": 0}, id="delay-0"),
    ],
)
async def test_a_start_time_not_in_the_future_starts_the_run_at_once(when):
    async with Runtime([report], store="memory://") as runtime:
        receipt = await workflows.start(report, runtime=runtime, **when)
        assert "startAt" not in await first_event_data(runtime, receipt.run_id)
        record = await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        assert record.status == "completed" and record.wake_at is None


async def test_a_negative_delay_is_refused_and_stores_nothing():
    async with Runtime([report], store="memory://") as runtime:
        with pytest.raises(InvalidSchedule):
            await workflows.start(report, delay=-1, runtime=runtime)
        assert (await runs.list(runtime=runtime)).runs == []


@pytest.mark.parametrize("query", ["delay=0", "at=2020-01-01T00:00:00Z"])
async def test_over_http_a_start_time_not_in_the_future_starts_the_run_at_once(tmp_path, query):
    async with served([report], lambda: local_target("memory", tmp_path)) as (runtime, client):
        answer = await client.post(f"/workflows/start-times?{query}")
        assert answer.status_code == 202
        run_id = answer.json()["runId"]
        assert "startAt" not in await first_event_data(runtime, run_id)
        assert (await runs.wait(run_id, timeout=5, runtime=runtime)).status == "completed"

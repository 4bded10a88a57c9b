"""The test environment's virtual time: waits of days pass in milliseconds, in order, and only forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flue_core import schedules
from flue_core.models import RunStatus
from flue_core.testkit import InvalidTimeAdvance, RunStuck, TestEnvironment
from testkit_app import ALL, approval, checkout, report, reminder

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def flue_workflows():
    return ALL


@pytest.mark.flue(start=START)
async def test_the_day_long_approval_times_out_when_the_clock_passes_its_deadline(flue_env):
    began = time.perf_counter()
    flue_env.steps.double("notify", {"sent": True})
    run = await flue_env.start(approval, {"amount": 120})
    await flue_env.advance(hours=23, minutes=59)
    assert (await flue_env.run(run)).status == RunStatus.WAITING
    await flue_env.advance(minutes=1)
    assert await flue_env.result(run) == {"status": "expired", "at": "2026-03-03T09:00:00+00:00"}
    assert time.perf_counter() - began < 0.5


@pytest.mark.flue(start=START)
async def test_result_skips_to_the_deadline_by_itself(flue_env):
    flue_env.steps.double("notify", {"sent": True})
    run = await flue_env.start(approval, {"amount": 120})
    assert (await flue_env.result(run))["status"] == "expired"
    assert flue_env.now() == START + timedelta(days=1)


@pytest.mark.flue(start=START)
async def test_advance_fires_waits_in_time_order_at_their_own_times(flue_env):
    run = await flue_env.start(reminder, {})
    await flue_env.advance(days=30)
    assert await flue_env.result(run) == [
        "2026-03-02T09:00:00+00:00",
        "2026-03-15T09:00:00+00:00",
        "2026-03-16T09:00:00+00:00",
    ]
    assert flue_env.now() == START + timedelta(days=30)


@pytest.mark.flue(start=START)
async def test_a_delayed_start_begins_when_the_clock_reaches_it(flue_env):
    run = await flue_env.start(report, delay=3600)
    assert (await flue_env.run(run)).status == RunStatus.SCHEDULED
    await flue_env.advance(minutes=59)
    assert (await flue_env.run(run)).status == RunStatus.SCHEDULED
    await flue_env.advance(minutes=1)
    assert (await flue_env.run(run)).result == "2026-03-02T10:00:00+00:00"


@pytest.mark.flue(start=START)
async def test_retry_back_offs_of_steps_and_of_runs_pass_in_virtual_time(flue_env):
    flue_env.steps.double("charge", ConnectionError("card network down"))
    run = await flue_env.start(checkout, {"amount": 30})
    began = time.perf_counter()
    record = await flue_env.wait(run)
    assert record.status == RunStatus.FAILED and record.attempt == 3
    assert flue_env.steps.count("charge") == 12  # 3 attempts of 1 call and 3 retries each
    # back-offs: steps 10 + 20 + 40 s per attempt, runs 0.5 s then 1 s between attempts
    assert flue_env.now() == START + timedelta(seconds=3 * 70 + 1.5)
    assert time.perf_counter() - began < 1


@pytest.mark.flue(start=START)
async def test_schedule_ticks_fire_as_time_passes(flue_env):
    await flue_env.advance(hours=3)
    ticks = sorted(r.result for r in (await schedules_runs(flue_env, "hourly")))
    assert ticks == ["2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+00:00", "2026-03-02T12:00:00+00:00"]


@pytest.mark.flue(start=START)
async def test_a_week_of_hourly_ticks_passes_in_well_under_a_second(flue_env):
    began = time.perf_counter()
    await flue_env.advance(days=7)
    assert len(await schedules_runs(flue_env, "hourly")) == 7 * 24
    assert time.perf_counter() - began < 1


@pytest.mark.flue(start=START)
async def test_a_schedule_created_in_the_test_ticks_in_virtual_time(flue_env):
    await schedules.create("every-15", report, "*/15 * * * *", runtime=flue_env.runtime)
    await flue_env.advance(minutes=45)
    assert len(await schedules_runs(flue_env, "report")) == 3


@pytest.mark.flue(start=START, auto_skip=False)
async def test_without_auto_skip_a_run_waiting_for_time_is_stuck_until_the_test_moves_the_clock(flue_env):
    run = await flue_env.start(reminder, {})
    with pytest.raises(RunStuck, match=r"it sleeps until 2026-03-15T09:00:00.000Z .*env.advance"):
        await flue_env.result(run)
    await flue_env.advance(days=14)
    assert len(await flue_env.result(run)) == 3


@pytest.mark.flue(start=START)
async def test_a_run_waiting_for_a_signal_nobody_sends_is_stuck(flue_env):
    flue_env.steps.double("notify", {"sent": True})
    run = await flue_env.start(approval, {"amount": 5})
    await flue_env.waiting(run, signal="decision")
    with pytest.raises(RunStuck, match="does not wait for signal 'other'"):
        await flue_env.waiting(run, signal="other", skip=False)


async def test_time_only_moves_forward(flue_env):
    with pytest.raises(InvalidTimeAdvance):
        await flue_env.advance(-1)
    with pytest.raises(InvalidTimeAdvance):
        await flue_env.advance(hours=-2)
    with pytest.raises(InvalidTimeAdvance, match="only moves forward"):
        await flue_env.advance_to(flue_env.now() - timedelta(seconds=1))
    with pytest.raises(InvalidTimeAdvance, match="timezone-aware"):
        await flue_env.advance_to(datetime(2030, 1, 1))
    with pytest.raises(InvalidTimeAdvance, match="finite"):
        await flue_env.advance(float("nan"))


def test_a_clock_that_starts_before_1970_or_without_an_offset_is_refused():
    with pytest.raises(InvalidTimeAdvance):
        TestEnvironment(ALL, start=datetime(1969, 12, 31, tzinfo=UTC))
    with pytest.raises(InvalidTimeAdvance):
        TestEnvironment(ALL, start=datetime(2026, 1, 1))


@pytest.mark.flue(workflows=[report], start=START)
async def test_runs_are_created_at_virtual_time(flue_env):
    await flue_env.advance(days=400)
    run = await flue_env.start(report)
    assert (await flue_env.run(run)).created_at == START + timedelta(days=400)


async def test_the_environment_runs_on_a_sqlite_store(tmp_path):
    async with TestEnvironment([reminder], store=f"sqlite:///{tmp_path}/runs.db", start=START) as env:
        run = await env.start(reminder, {})
        assert len(await env.result(run)) == 3
        assert env.now() == START + timedelta(days=14)


async def schedules_runs(env: TestEnvironment, workflow: str) -> list:
    from flue_core import runs

    page = await runs.list(workflow=workflow, limit=1000, runtime=env.runtime)
    return [record for record in page.runs if record.finished]

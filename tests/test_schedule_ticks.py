"""Seeing what a schedule does: its next ticks (cron read in its zone, paused or not), the runs it
started, and the catch-up warning that names the ticks it skipped."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from flue_core import InvalidQuery, RunContext, RunStatus, ScheduleNotFound, schedules, workflow
from flue_core.scheduler import tick, tick_key, tick_of

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)


@workflow(name="report")
async def report(ctx: RunContext, input: dict | None = None) -> str:
    return "done"


@pytest.fixture
def flue_workflows():
    return [report]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.mark.flue(start=START)
async def test_next_ticks_follow_the_cron_in_the_schedules_zone_across_daylight_saving(flue_env):
    await schedules.create("nightly", report, "30 2 * * *", timezone="Europe/Berlin", runtime=flue_env.runtime)
    ticks = await schedules.next_ticks("nightly", 4, runtime=flue_env.runtime)
    # 02:30 in Berlin is 01:30 UTC in winter; on 29 March 02:30 does not exist (03:30 CEST), then 00:30 UTC
    assert ticks == [at(28, 1, 30), at(29, 1, 0), at(30, 0, 30), at(31, 0, 30)]


@pytest.mark.flue(start=START)
async def test_next_ticks_start_from_now_as_the_clock_moves(flue_env):
    await schedules.create("quarterly", report, "*/15 * * * *", runtime=flue_env.runtime)
    await flue_env.advance(minutes=20)
    assert await schedules.next_ticks("quarterly", 2, runtime=flue_env.runtime) == [at(27, 9, 30), at(27, 9, 45)]


@pytest.mark.flue(start=START)
async def test_a_paused_schedule_shows_the_ticks_it_would_run_and_says_it_is_paused(flue_env):
    await schedules.create("hourly", report, "0 * * * *", paused=True, runtime=flue_env.runtime)
    seen = await schedules.overview("hourly", ticks=3, runtime=flue_env.runtime)
    assert seen.paused is True
    assert seen.next_ticks == [at(27, 10), at(27, 11), at(27, 12)]
    await flue_env.advance(hours=2)
    assert await schedules.last_runs("hourly", runtime=flue_env.runtime) == []


@pytest.mark.flue(start=START)
async def test_next_ticks_take_a_schedule_as_well_as_its_name(flue_env):
    made = await schedules.create("hourly", report, "0 * * * *", runtime=flue_env.runtime)
    assert await schedules.next_ticks(made, 1, runtime=flue_env.runtime) == [at(27, 10)]
    assert await schedules.next_ticks(made, 0, runtime=flue_env.runtime) == []


@pytest.mark.flue(start=START)
async def test_last_runs_are_the_schedules_own_newest_first_with_their_ticks(flue_env):
    rt = flue_env.runtime
    await schedules.create("hourly", report, "0 * * * *", runtime=rt)
    await schedules.create("hourly-eu", report, "30 * * * *", runtime=rt)  # same workflow, a name it prefixes
    await flue_env.advance(hours=3)
    manual = await flue_env.start(report, key="by-hand")
    await flue_env.wait(manual)
    runs = await schedules.last_runs("hourly", runtime=rt)
    assert [tick_of("hourly", run.key) for run in runs] == [at(27, 12), at(27, 11), at(27, 10)]
    assert all(run.workflow == "report" and run.status == RunStatus.COMPLETED for run in runs)
    assert [run.key for run in await schedules.last_runs("hourly", 2, runtime=rt)] == [
        tick_key("hourly", at(27, 12)),
        tick_key("hourly", at(27, 11)),
    ]
    seen = await schedules.overview("hourly-eu", ticks=1, runs=5, runtime=rt)
    assert [(run.tick, run.status) for run in seen.last_runs] == [
        (at(27, 11, 30), RunStatus.COMPLETED),
        (at(27, 10, 30), RunStatus.COMPLETED),
        (at(27, 9, 30), RunStatus.COMPLETED),
    ]
    assert seen.next_ticks == [at(27, 12, 30)]


@pytest.mark.flue(start=START)
async def test_last_runs_look_past_a_page_of_other_runs_of_the_workflow(flue_env):
    rt = flue_env.runtime
    await schedules.create("hourly", report, "0 * * * *", runtime=rt)
    await flue_env.advance(hours=1)
    for n in range(250):  # more than one page of the store's listing, newer than the scheduled run
        await flue_env.start(report, key=f"by-hand-{n}")
    await flue_env.settle()
    assert [tick_of("hourly", run.key) for run in await schedules.last_runs("hourly", runtime=rt)] == [at(27, 10)]


@pytest.mark.flue(start=START)
async def test_an_overview_without_runs_asked_does_not_list_them(flue_env):
    await schedules.create("hourly", report, "0 * * * *", runtime=flue_env.runtime)
    seen = await schedules.overview("hourly", runs=None, runtime=flue_env.runtime)
    assert seen.last_runs is None and len(seen.next_ticks) == 5
    dumped = seen.model_dump(mode="json")
    assert dumped["nextTicks"][0] == "2026-03-27T10:00:00.000Z" and dumped["name"] == "hourly"


@pytest.mark.flue(start=START)
@pytest.mark.parametrize("count", [-1, 101, "many", 2.5, True])
async def test_a_count_out_of_range_is_an_invalid_query(flue_env, count):
    await schedules.create("hourly", report, "0 * * * *", runtime=flue_env.runtime)
    with pytest.raises(InvalidQuery):
        await schedules.next_ticks("hourly", count, runtime=flue_env.runtime)
    with pytest.raises(InvalidQuery):
        await schedules.last_runs("hourly", count, runtime=flue_env.runtime)


@pytest.mark.flue(start=START)
async def test_ticks_and_runs_of_an_unknown_schedule_are_not_found(flue_env):
    with pytest.raises(ScheduleNotFound):
        await schedules.next_ticks("nothing", runtime=flue_env.runtime)
    with pytest.raises(ScheduleNotFound):
        await schedules.last_runs("nothing", runtime=flue_env.runtime)


def test_tick_of_reads_back_only_its_own_schedules_keys():
    key = tick_key("daily", at(27, 2))
    assert tick_of("daily", key) == at(27, 2)
    assert tick_of("dail", key) is None and tick_of("daily-eu", key) is None
    assert tick_of("daily", None) is None and tick_of("daily", "schedule:daily:yesterday") is None


# -- the catch-up warning --------------------------------------------------------------------------


def skipped_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]


@pytest.mark.flue(start=START)
async def test_the_catchup_warning_names_each_skipped_tick_when_they_are_few(flue_env, caplog):
    made = await schedules.create("ten", report, "*/10 * * * *", catchup=1, runtime=flue_env.runtime)
    await tick(flue_env.runtime, made, START + timedelta(hours=1))  # every process was down for an hour
    assert skipped_warnings(caplog) == [
        "flue: schedule 'ten' skipped 4 missed ticks (2026-03-27T09:10:00.000Z, 2026-03-27T09:20:00.000Z,"
        " 2026-03-27T09:30:00.000Z, 2026-03-27T09:40:00.000Z) beyond its catchup of 1"
    ]
    await flue_env.settle()
    ran = sorted(tick_of("ten", run.key) for run in await schedules.last_runs("ten", runtime=flue_env.runtime))
    assert ran == [at(27, 9, 50), at(27, 10)]  # the catch-up's one missed tick and the one on time


@pytest.mark.flue(start=START)
async def test_the_catchup_warning_gives_the_first_the_last_and_how_many_when_they_are_many(flue_env, caplog):
    made = await schedules.create("minutely", report, "* * * * *", catchup=0, runtime=flue_env.runtime)
    await tick(flue_env.runtime, made, START + timedelta(hours=2))
    # 09:01 to 10:58 skipped; 10:59 and 11:00 are within the minute's grace, so on time
    assert skipped_warnings(caplog) == [
        "flue: schedule 'minutely' skipped 118 missed ticks, from 2026-03-27T09:01:00.000Z to"
        " 2026-03-27T10:58:00.000Z beyond its catchup of 0"
    ]


@pytest.mark.flue(start=START)
async def test_the_catchup_warning_stops_counting_after_a_long_downtime(flue_env, caplog):
    made = await schedules.create("minutely", report, "* * * * *", catchup=0, runtime=flue_env.runtime)
    await tick(flue_env.runtime, made, START + timedelta(days=30))
    assert skipped_warnings(caplog) == [
        "flue: schedule 'minutely' skipped more than 1001 missed ticks, from 2026-03-27T09:01:00.000Z to"
        " 2026-04-26T08:58:00.000Z beyond its catchup of 0"
    ]


@pytest.mark.flue(start=START)
async def test_a_single_skipped_tick_is_named(flue_env, caplog):
    made = await schedules.create("hourly", report, "0 * * * *", catchup=1, runtime=flue_env.runtime)
    await tick(flue_env.runtime, made, START + timedelta(hours=2, minutes=30))
    assert skipped_warnings(caplog) == [
        "flue: schedule 'hourly' skipped 1 missed tick (2026-03-27T10:00:00.000Z) beyond its catchup of 1"
    ]

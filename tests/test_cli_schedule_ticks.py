"""``flue schedules`` shows each schedule's next tick, and ``flue schedules show NAME`` its next ticks
and the runs it started: on the local store (a SQLite file shared with the test's runtime) and on a
server (``--url``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import cli_app
from cli_support import flue_async, served, store_url
from flue_core import Runtime, runs, schedules
from flue_core.cli.exits import Exit
from flue_core.models import format_timestamp
from flue_core.scheduler import tick

pytestmark = pytest.mark.anyio


def grant(request, run=None) -> bool:
    return True


async def caught_up(runtime: Runtime, name: str) -> list[str]:
    """An hourly schedule that every process missed for three hours, caught up (catchup 2): its runs' ids."""
    made = await schedules.create(name, "cli-greet", "0 * * * *", input={"name": "h"}, catchup=2, runtime=runtime)
    await tick(runtime, made, made.created_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3, minutes=30))
    started = await schedules.last_runs(name, runtime=runtime)
    for record in started:
        await runs.wait(record.run_id, timeout=10, runtime=runtime)
    return [record.run_id for record in started]


async def test_show_prints_the_next_ticks_and_the_last_runs_of_a_local_schedule(tmp_path):
    async with Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path)) as runtime:
        started = await caught_up(runtime, "hourly")
        ticks = await schedules.next_ticks("hourly", 3, runtime=runtime)
    text = await flue_async(tmp_path, "schedules", "show", "hourly", "--ticks", "3", "--format", "text")
    assert text.code == Exit.COMPLETED, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["hourly", "cli-greet", "'0", "*", "*", "*", "*'", "in", "UTC", "active", "catchup", "2"]
    assert lines[2] == "NEXT TICKS"
    assert [line[:19] for line in lines[3:6]] == [t.astimezone().strftime("%Y-%m-%d %H:%M:%S") for t in ticks]
    assert all(" in " in line for line in lines[3:6])
    assert lines[7].split() == ["LAST", "RUNS", "STATUS", "TICK", "CREATED", "DURATION"]
    assert [line.split()[:2] for line in lines[8:]] == [[run_id, "completed"] for run_id in started]
    assert len(started) == 2

    piped = await flue_async(tmp_path, "schedules", "show", "hourly", "--runs", "1")
    [shown] = piped.json_lines()
    assert shown["name"] == "hourly" and len(shown["nextTicks"]) == 5
    assert [run["runId"] for run in shown["lastRuns"]] == started[:1]


async def test_the_listing_has_a_next_tick_column_and_a_paused_schedule_still_shows_one(tmp_path):
    async with Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path)) as runtime:
        await schedules.create("nightly", "cli-greet", "0 2 * * *", input={"name": "n"}, paused=True, runtime=runtime)
        [nightly] = await schedules.next_ticks("nightly", 1, runtime=runtime)
    text = await flue_async(tmp_path, "schedules", "--format", "text")
    header, row = text.stdout.splitlines()
    assert header.split() == ["SCHEDULE", "WORKFLOW", "CRON", "ZONE", "STATE", "NEXT", "TICK", "LAST", "TICK"]
    assert row.split()[:9] == ["nightly", "cli-greet", "0", "2", "*", "*", "*", "UTC", "paused"]
    assert nightly.astimezone().strftime("%Y-%m-%d %H:%M:%S") in row
    [listed] = (await flue_async(tmp_path, "schedules")).json_lines()
    assert listed["paused"] is True and listed["nextTicks"][0] == format_timestamp(nightly)
    assert "lastRuns" not in listed


async def test_show_of_an_unknown_schedule_exits_not_found(tmp_path):
    missing = await flue_async(tmp_path, "schedules", "show", "nothing")
    assert missing.code == Exit.NOT_FOUND and "nothing" in missing.stderr


async def test_show_on_a_server(tmp_path):
    async with served(tmp_path, schedules_enabled=True, authorize_schedules=grant) as (runtime, url):
        started = await caught_up(runtime, "hourly")
        shown = await flue_async(tmp_path, "schedules", "show", "hourly", "--ticks", "2", "--url", url)
        assert shown.code == Exit.COMPLETED, shown.stderr
        [body] = shown.json_lines()
        assert len(body["nextTicks"]) == 2 and [run["runId"] for run in body["lastRuns"]] == started
        text = await flue_async(tmp_path, "schedules", "show", "hourly", "--url", url, "--format", "text")
        assert "NEXT TICKS" in text.stdout and all(run_id in text.stdout for run_id in started)
        bad = await flue_async(tmp_path, "schedules", "show", "hourly", "--ticks", "500", "--url", url)
        assert bad.code != Exit.COMPLETED and "ticks" in bad.stderr

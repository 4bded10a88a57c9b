"""``GET /schedules`` and ``GET /schedules/{name}`` show each schedule's next ticks and the runs it
started (``nextTicks``, ``lastRuns``), over a real server, on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flue_core import RunContext, runs, schedules, workflow
from flue_core.models import format_timestamp, parse_timestamp
from flue_core.scheduler import tick
from http_served import error_of, served

pytestmark = pytest.mark.anyio


@workflow(name="report", http=True)
async def report(ctx: RunContext, input: dict) -> dict:
    return {"secret": "the result stays with the run"}


ADMIN = {"x-role": "admin"}
MANAGED = {"schedules_enabled": True, "authorize_schedules": lambda request: request.headers.get("x-role") == "admin"}


async def ticked_three_times(rt) -> None:
    """Every process was down for three hours of an hourly schedule; one comes back and catches up."""
    made = await schedules.create("hourly", report, "0 * * * *", input={"scope": "all"}, catchup=3, runtime=rt)
    ticked = await tick(rt, made, made.created_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3, minutes=30))
    assert ticked is not None
    for record in await schedules.last_runs("hourly", runtime=rt):
        await runs.wait(record.run_id, timeout=10, runtime=rt)


async def test_a_schedule_over_http_has_its_next_ticks_and_last_runs(make_target):
    async with served([report], make_target, **MANAGED) as (rt, client):
        await ticked_three_times(rt)
        answer = await client.get("/schedules/hourly", headers=ADMIN)
        assert answer.status_code == 200
        body = answer.json()
        expected = [format_timestamp(t) for t in await schedules.next_ticks("hourly", runtime=rt)]
        assert body["name"] == "hourly" and body["paused"] is False
        assert body["nextTicks"] == expected and len(expected) == 5
        assert [parse_timestamp(t).minute for t in body["nextTicks"]] == [0] * 5
        last = body["lastRuns"]
        assert len(last) == 3
        assert set(last[0]) == {"runId", "status", "tick", "createdAt", "startedAt", "endedAt"}  # no input, no result
        assert [run["status"] for run in last] == ["completed"] * 3
        ticks = [parse_timestamp(run["tick"]) for run in last]
        assert ticks == sorted(ticks, reverse=True) and ticks[0] - ticks[2] == timedelta(hours=2)
        for run in last:
            record = await runs.get(run["runId"], runtime=rt)
            assert record is not None and record.key == f"schedule:hourly:{run['tick']}"


async def test_how_many_ticks_and_runs_is_asked_in_the_query(make_target):
    async with served([report], make_target, **MANAGED) as (rt, client):
        await ticked_three_times(rt)
        one = (await client.get("/schedules/hourly?ticks=1&runs=2", headers=ADMIN)).json()
        assert len(one["nextTicks"]) == 1 and len(one["lastRuns"]) == 2
        none = (await client.get("/schedules/hourly?ticks=0&runs=0", headers=ADMIN)).json()
        assert none["nextTicks"] == [] and none["lastRuns"] == []
        for query in ("ticks=101", "runs=-1", "ticks=many", "ticks=1&ticks=2", "limit=3"):
            refused = await client.get(f"/schedules/hourly?{query}", headers=ADMIN)
            assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_query", query


async def test_the_listing_has_next_ticks_and_last_runs_only_when_asked(make_target):
    async with served([report], make_target, **MANAGED) as (rt, client):
        await ticked_three_times(rt)
        await schedules.create("nightly", report, "0 2 * * *", timezone="Europe/Berlin", paused=True, runtime=rt)
        listed = (await client.get("/schedules", headers=ADMIN)).json()["schedules"]
        assert [s["name"] for s in listed] == ["hourly", "nightly"]
        assert all(len(s["nextTicks"]) == 5 and "lastRuns" not in s for s in listed)
        nightly = listed[1]
        assert nightly["paused"] is True  # a paused schedule still shows what it would do
        assert nightly["nextTicks"] == [format_timestamp(t) for t in await schedules.next_ticks("nightly", runtime=rt)]
        with_runs = (await client.get("/schedules?ticks=2&runs=1", headers=ADMIN)).json()["schedules"]
        assert [(len(s["nextTicks"]), len(s["lastRuns"])) for s in with_runs] == [(2, 1), (2, 0)]


async def test_an_unknown_schedule_or_a_refused_caller_gets_404(make_target):
    async with served([report], make_target, **MANAGED) as (rt, client):
        unknown = await client.get("/schedules/nothing?ticks=3", headers=ADMIN)
        assert unknown.status_code == 404 and error_of(unknown)["code"] == "schedule_not_found"
        await ticked_three_times(rt)
        refused = await client.get("/schedules/hourly?runs=5")
        assert refused.status_code == 404 and error_of(refused)["code"] == "route_not_found"


async def test_pausing_over_http_keeps_the_next_ticks_shown(make_target):
    async with served([report], make_target, **MANAGED) as (rt, client):
        await schedules.create("hourly", report, "0 * * * *", runtime=rt)
        before = (await client.get("/schedules/hourly", headers=ADMIN)).json()["nextTicks"]
        assert (await client.post("/schedules/hourly/pause", headers=ADMIN)).json()["paused"] is True
        after = (await client.get("/schedules/hourly", headers=ADMIN)).json()
        assert after["paused"] is True and after["nextTicks"] == before

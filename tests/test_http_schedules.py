"""The ``/schedules`` routes and delayed starts (``POST /workflows/{name}?delay=|at=``) end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flue_core import RunContext, RunStatus, runs, schedules, workflow
from flue_core.models import format_timestamp, utc_now
from http_served import error_of, served

pytestmark = pytest.mark.anyio


@workflow(name="report", http=True)
async def report(ctx: RunContext, input: dict) -> str:
    return f"report {input.get('scope')}"


@workflow(name="internal")
async def internal(ctx: RunContext) -> None:
    return None


WORKFLOWS = [report, internal]
ADMIN = {"x-role": "admin"}


def admins(request) -> bool:
    return request.headers.get("x-role") == "admin"


MANAGED = {"schedules_enabled": True, "authorize_schedules": admins}
NIGHTLY = {"name": "nightly", "workflow": "report", "cron": "0 2 * * *", "input": {"scope": "all"}, "timezone": "Europe/Berlin"}


async def test_schedules_are_created_listed_paused_resumed_and_deleted_over_http(make_target):
    async with served(WORKFLOWS, make_target, **MANAGED) as (rt, client):
        created = await client.post("/schedules", json=NIGHTLY, headers=ADMIN)
        assert created.status_code == 201
        assert created.json()["name"] == "nightly" and created.json()["timezone"] == "Europe/Berlin"
        again = await client.post("/schedules", json=NIGHTLY, headers=ADMIN)
        assert again.status_code == 200 and again.json() == created.json()
        listed = await client.get("/schedules", headers=ADMIN)
        assert [s["name"] for s in listed.json()["schedules"]] == ["nightly"]
        assert (await client.post("/schedules/nightly/pause", headers=ADMIN)).json()["paused"] is True
        assert (await schedules.get("nightly", runtime=rt)).paused
        assert (await client.post("/schedules/nightly/resume", headers=ADMIN)).json()["paused"] is False
        assert (await client.get("/schedules/nightly", headers=ADMIN)).json()["cron"] == "0 2 * * *"
        assert (await client.delete("/schedules/nightly", headers=ADMIN)).status_code == 204
        gone = await client.get("/schedules/nightly", headers=ADMIN)
        assert gone.status_code == 404 and error_of(gone)["code"] == "schedule_not_found"


async def test_schedules_are_off_unless_enabled_and_closed_unless_granted(make_target):
    async with served(WORKFLOWS, make_target) as (rt, client):
        off = await client.get("/schedules", headers=ADMIN)
    async with served(WORKFLOWS, make_target, schedules_enabled=True) as (rt, client):
        closed = await client.get("/schedules", headers=ADMIN)
        refused_post = await client.post("/schedules", json=NIGHTLY, headers=ADMIN)
        assert await schedules.list(runtime=rt) == []
    assert off.status_code == closed.status_code == refused_post.status_code == 404
    assert error_of(off)["code"] == error_of(closed)["code"] == "route_not_found"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"cron": "61 * * * *"}, 400, "invalid_schedule"),
        ({"timezone": "Mars/Olympus"}, 400, "invalid_schedule"),
        ({"catchup": "2"}, 400, "invalid_schedule"),
        ({"extra": 1}, 400, "invalid_schedule"),
        ({"workflow": "internal"}, 404, "workflow_not_found"),
        ({"workflow": "nothing"}, 404, "workflow_not_found"),
        ({"input": [1]}, 422, "invalid_input"),
        ({"name": "bad name"}, 400, "invalid_schedule"),
    ],
)
async def test_a_bad_schedule_is_a_typed_4xx_and_stores_nothing(make_target, change, status, code):
    async with served(WORKFLOWS, make_target, **MANAGED) as (rt, client):
        answer = await client.post("/schedules", json={**NIGHTLY, **change}, headers=ADMIN)
        assert answer.status_code == status and error_of(answer)["code"] == code
        assert await schedules.list(runtime=rt) == []


async def test_a_taken_name_with_another_definition_is_409(make_target):
    async with served(WORKFLOWS, make_target, **MANAGED) as (rt, client):
        await client.post("/schedules", json=NIGHTLY, headers=ADMIN)
        answer = await client.post("/schedules", json={**NIGHTLY, "cron": "0 3 * * *"}, headers=ADMIN)
        assert answer.status_code == 409 and error_of(answer)["code"] == "schedule_exists"


async def test_schedule_routes_answer_405_and_unknown_actions_404(make_target):
    async with served(WORKFLOWS, make_target, **MANAGED) as (rt, client):
        await client.post("/schedules", json=NIGHTLY, headers=ADMIN)
        assert (await client.put("/schedules", headers=ADMIN)).status_code == 405
        assert (await client.post("/schedules/nightly", headers=ADMIN)).status_code == 405
        assert (await client.get("/schedules/nightly/pause", headers=ADMIN)).status_code == 405
        assert (await client.post("/schedules/nightly/explode", headers=ADMIN)).status_code == 404
        missing = await client.post("/schedules/nothing/pause", headers=ADMIN)
        assert missing.status_code == 404 and error_of(missing)["code"] == "schedule_not_found"


async def test_a_delayed_start_over_http_is_scheduled_then_runs(make_target):
    async with served(WORKFLOWS, make_target) as (rt, client):
        answer = await client.post("/workflows/report?delay=0.3", json={"scope": "later"})
        assert answer.status_code == 202
        run_id = answer.json()["runId"]
        record = await runs.get(run_id, runtime=rt)
        assert record is not None and record.status == RunStatus.SCHEDULED
        assert await runs.result(run_id, timeout=10, runtime=rt) == "report later"


async def test_a_start_at_a_time_over_http(make_target):
    async with served(WORKFLOWS, make_target) as (rt, client):
        when = format_timestamp(utc_now() + timedelta(hours=1))
        answer = await client.post(f"/workflows/report?at={when}", json={})
        record = await runs.get(answer.json()["runId"], runtime=rt)
        assert record is not None and record.status == RunStatus.SCHEDULED and format_timestamp(record.wake_at) == when


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("delay=-1", "invalid_query"),
        ("delay=1e3", "invalid_query"),
        ("delay=soon", "invalid_query"),
        ("delay=999999999999", "invalid_schedule"),
        ("at=tomorrow", "invalid_query"),
        ("at=2026-12-24T09:00:00", "invalid_query"),
        ("delay=1&at=2030-01-01T00:00:00Z", "invalid_schedule"),
        ("delay=1&delay=2", "invalid_query"),
    ],
)
async def test_a_bad_delay_over_http_is_400_and_creates_no_run(make_target, query, code):
    async with served(WORKFLOWS, make_target) as (rt, client):
        answer = await client.post(f"/workflows/report?{query}", json={})
        assert answer.status_code == 400 and error_of(answer)["code"] == code
        assert (await runs.list(runtime=rt)).runs == []


async def test_listing_children_over_http(make_target):
    @workflow(name="parent", http=True)
    async def parent(ctx: RunContext) -> list:
        child = await ctx.start_child(report, input={"scope": "child"})
        return [child.run_id, await ctx.wait_for(child)]

    async with served([*WORKFLOWS, parent], make_target, list_runs_enabled=True, authorize_run_list=lambda r: True) as (rt, client):
        answer = await client.post("/workflows/parent", json=None)
        run_id = answer.json()["runId"]
        child_id, result = await runs.result(run_id, timeout=10, runtime=rt)
        assert result == "report child"
        listed = await client.get(f"/runs?parent={run_id}")
        assert [r["runId"] for r in listed.json()["runs"]] == [child_id]
        assert listed.json()["runs"][0]["parentRunId"] == run_id
        bad = await client.get("/runs?parent=not%20an%20id")
        assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_query"

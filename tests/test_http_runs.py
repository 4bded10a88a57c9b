"""``GET|HEAD /runs/{run_id}`` (``?meta``, authorisation) and the opt-in ``GET /runs`` listing, end to end."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from flue_core import RunContext, Runtime, hookimpl, runs, workflow, workflows
from flue_node_like import LocalTarget
from http_served import STORES, error_of, local_target
from http_served import served as serve_app

pytestmark = pytest.mark.anyio


@workflow(name="report", http=True)
async def report(ctx: RunContext, input: dict) -> dict:
    ctx.emit("rows.counted", {"rows": input.get("rows", 0)})
    return {"rows": input.get("rows", 0)}


@workflow(name="cleanup")
async def cleanup(ctx: RunContext) -> str:
    return "clean"


def grant_when_header(request: Request, run) -> bool | None:
    """The app's reader policy in these tests: the ``x-reader`` header names the workflow it may read."""
    reader = request.headers.get("x-reader")
    return None if reader is None else reader == run.workflow


@pytest.fixture(params=STORES)
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LocalTarget]:
    return lambda: local_target(request.param, tmp_path, request)


@pytest.fixture
def served(make_target: Callable[[], LocalTarget]) -> Callable[..., Any]:
    """``async with served(**create_app_options) as (runtime, client)``."""
    return partial(serve_app, [report, cleanup], make_target)


async def finished_run(runtime: Runtime, wf: Any = report, **input: Any) -> str:
    receipt = await workflows.start(wf, input=None if wf is cleanup else input, runtime=runtime)
    await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
    return receipt.run_id



def without_id(response: httpx.Response, run_id: str) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, body and headers (minus date and length) with the run id blanked: what a prober sees."""
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ("date", "content-length"))
    return response.status_code, response.text.replace(run_id, "ID"), headers


# -- ?meta and authorisation --------------------------------------------------------------------------


async def test_meta_returns_the_run_record_to_a_granted_reader(served):
    async with served(authorize_run_read=grant_when_header) as (runtime, client):
        run_id = await finished_run(runtime, rows=3)
        response = await client.get(f"/runs/{run_id}?meta", headers={"x-reader": "report"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        record = await runs.get(run_id, runtime=runtime)
        assert response.json() == record.model_dump(mode="json")
        assert response.json()["runId"] == run_id and response.json()["result"] == {"rows": 3}


async def test_meta_ignores_stream_parameters(served):
    async with served(authorize_run_read=grant_when_header) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}?meta&offset=now&live=sse", headers={"x-reader": "report"})
        assert response.status_code == 200 and response.json()["status"] == "completed"


async def test_unauthorised_reader_gets_the_same_404_as_an_unknown_run(served):
    async with served(authorize_run_read=grant_when_header) as (runtime, client):
        run_id = await finished_run(runtime)
        unknown_id = "run_00000000000000000000000000"
        forbidden = await client.get(f"/runs/{run_id}?meta", headers={"x-reader": "cleanup"})
        unknown = await client.get(f"/runs/{unknown_id}?meta", headers={"x-reader": "cleanup"})
        assert forbidden.status_code == 404
        assert error_of(forbidden)["code"] == "run_not_found"
        assert without_id(forbidden, run_id) == without_id(unknown, unknown_id)


async def test_run_reads_are_closed_when_nothing_grants_them(served):
    async with served() as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}?meta")
        assert response.status_code == 404
        assert error_of(response)["code"] == "run_not_found"


async def test_head_of_a_forbidden_run_is_404(served):
    async with served() as (runtime, client):
        run_id = await finished_run(runtime)
        assert (await client.head(f"/runs/{run_id}")).status_code == 404


async def test_a_plugin_hook_may_grant_reads_asynchronously(served):
    class Readers:
        @hookimpl
        async def flue_authorize_run_read(self, request, run):
            return request.headers.get("authorization") == "Bearer ops"

    async with served(plugins=[Readers()]) as (runtime, client):
        run_id = await finished_run(runtime)
        granted = await client.get(f"/runs/{run_id}?meta", headers={"authorization": "Bearer ops"})
        refused = await client.get(f"/runs/{run_id}?meta", headers={"authorization": "Bearer guest"})
        assert granted.status_code == 200
        assert refused.status_code == 404


async def test_the_app_callable_is_asked_before_the_hooks(served):
    class GrantAll:
        @hookimpl
        def flue_authorize_run_read(self, request, run):
            return True

    async def deny_cleanup(request, run):
        return False if run.workflow == "cleanup" else None

    async with served(plugins=[GrantAll()], authorize_run_read=deny_cleanup) as (runtime, client):
        cleanup_id = await finished_run(runtime, cleanup)
        report_id = await finished_run(runtime)
        assert (await client.get(f"/runs/{cleanup_id}?meta")).status_code == 404
        assert (await client.get(f"/runs/{report_id}?meta")).status_code == 200  # abstained: the hook grants


async def test_an_authorizer_answer_that_is_not_a_bool_is_a_500(served):
    async with served(authorize_run_read=lambda request, run: "yes") as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}?meta")
        assert response.status_code == 500
        assert error_of(response)["code"] == "configuration_error"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_on_a_run_get_405_with_allow_get_head(served, method):
    async with served() as (_, client):
        response = await client.request(method, "/runs/run_whatever")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert error_of(response)["code"] == "method_not_allowed"


# -- listing -----------------------------------------------------------------------------------------


def list_for_admins(request: Request) -> bool:
    return request.headers.get("x-role") == "admin"


ADMIN = {"x-role": "admin"}


async def test_listing_is_off_by_default(served):
    async with served() as (runtime, client):
        await finished_run(runtime)
        response = await client.get("/runs", headers=ADMIN)
        assert response.status_code == 404
        assert error_of(response)["code"] == "route_not_found"


async def test_a_refused_listing_looks_exactly_like_listing_switched_off(served, make_target):
    async with served() as (_, client):
        off = await client.get("/runs")
    async with served(list_runs_enabled=True, authorize_run_list=list_for_admins) as (_, client):
        refused = await client.get("/runs")
        refused_post = await client.post("/runs")
    assert without_id(off, "") == without_id(refused, "")
    assert refused_post.status_code == 404


async def test_listing_without_any_authorizer_refuses_everyone(served):
    async with served(list_runs_enabled=True) as (_, client):
        assert (await client.get("/runs", headers=ADMIN)).status_code == 404


async def test_a_plugin_hook_may_grant_the_listing(served):
    class Admins:
        @hookimpl
        def flue_authorize_run_list(self, request):
            return request.headers.get("x-role") == "admin"

    async with served(list_runs_enabled=True, plugins=[Admins()]) as (runtime, client):
        await finished_run(runtime)
        assert (await client.get("/runs", headers=ADMIN)).status_code == 200


async def test_granted_listing_pages_newest_first_with_filters(served):
    async with served(list_runs_enabled=True, authorize_run_list=list_for_admins) as (runtime, client):
        first = await finished_run(runtime, rows=1)
        second = await finished_run(runtime, rows=2)
        await finished_run(runtime, cleanup)
        page = (await client.get("/runs?workflow=report&limit=1", headers=ADMIN)).json()
        assert [r["runId"] for r in page["runs"]] == [second]
        assert page["runs"][0]["result"] == {"rows": 2}
        rest = (await client.get("/runs", params={"workflow": "report", "cursor": page["nextCursor"]}, headers=ADMIN)).json()
        assert [r["runId"] for r in rest["runs"]] == [first] and rest["nextCursor"] is None
        completed = (await client.get("/runs?status=completed", headers=ADMIN)).json()
        assert len(completed["runs"]) == 3


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=ten", "invalid_query"),
        ("status=exploded", "invalid_query"),
        ("sort=asc", "invalid_query"),
        ("limit=1&limit=2", "invalid_query"),
    ],
)
async def test_listing_rejects_bad_parameters_with_400(served, query, code):
    async with served(list_runs_enabled=True, authorize_run_list=list_for_admins) as (_, client):
        response = await client.get(f"/runs?{query}", headers=ADMIN)
        assert response.status_code == 400
        assert error_of(response)["code"] == code


async def test_granted_listing_answers_405_to_other_methods(served):
    async with served(list_runs_enabled=True, authorize_run_list=list_for_admins) as (_, client):
        response = await client.delete("/runs", headers=ADMIN)
        assert response.status_code == 405 and response.headers["allow"] == "GET"

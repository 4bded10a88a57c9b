"""The dashboard's server side over HTTP (uvicorn, httpx): who sees its pages, what they send, and the
checks on its actions. What the pages do in a browser is in ``test_dashboard_browser.py``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.dashboard import LinkAccess
from flue_core.errors import ConfigurationError
from flue_core.http import create_app, serve
from flue_core.testing.base import GATES, gates
from flue_node_like import LocalTarget
from http_served import error_of, local_target
from http_served import served as serve_app

pytestmark = pytest.mark.anyio


@workflow(name="report", http=True)
async def report(ctx: RunContext, input: dict) -> dict:
    if "gate" in input:
        await GATES[input["gate"]].wait()
    return {"rows": 1}


def ops_only(request: Request, run: Any = None) -> bool:
    """The test apps' grant, for reading, listing and cancelling alike: the ``viewer=ops`` cookie."""
    return request.cookies.get("viewer") == "ops"




@pytest.fixture
def make_target(tmp_path: Path) -> Callable[[], LocalTarget]:
    return lambda: local_target("sqlite", tmp_path)


@pytest.fixture
def served(make_target: Callable[[], LocalTarget]) -> Callable[..., Any]:
    """``async with served(**create_app_options) as (runtime, client)``: the dashboard on, and a client
    with the ``viewer=ops`` cookie (``as_guest(client)`` drops it)."""

    @asynccontextmanager
    async def opened(**options: Any) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
        async with serve_app([report], make_target, dashboard=True, **options) as (runtime, client):
            client.cookies.set("viewer", "ops")
            yield runtime, client

    return opened


def as_guest(client: httpx.AsyncClient) -> None:
    client.cookies.set("viewer", "guest")


async def finished_run(runtime: Runtime) -> str:
    receipt = await workflows.start(report, input={}, runtime=runtime)
    await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
    return receipt.run_id


def page_data(response: httpx.Response) -> dict[str, Any]:
    """The JSON a page hands to its script."""
    import json

    found = re.search(r'<script type="application/json" id="flue-dashboard">(.*?)</script>', response.text)
    assert found, "the page carries its script's data"
    return json.loads(found.group(1))


def same_answer(a: httpx.Response, b: httpx.Response) -> bool:
    """Status, headers (but date and length) and body alike: what a prober compares."""
    def seen(r: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
        return r.status_code, sorted((k, v) for k, v in r.headers.items() if k not in ("date", "content-length")), r.text

    return seen(a) == seen(b)


# -- who sees the pages -------------------------------------------------------------------------------


async def test_the_runs_page_is_served_to_a_caller_granted_the_listing(served):
    async with served(authorize_run_list=ops_only) as (_, client):
        response = await client.get("/dashboard/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert page_data(response)["page"] == "runs"


async def test_the_runs_page_refused_answers_as_an_app_without_a_dashboard(served, make_target):
    async with serve_app([report], make_target) as (_, client):
        without = await client.get("/dashboard/")
    async with served(authorize_run_list=ops_only) as (_, client):
        as_guest(client)
        refused = await client.get("/dashboard/")
        refused_post = await client.post("/dashboard/")
    assert error_of(refused)["code"] == "route_not_found"
    assert same_answer(refused, without)
    assert refused_post.status_code == 404  # the method is looked at only after the grant


async def test_the_dashboard_is_closed_when_nothing_grants_it(served):
    async with served() as (runtime, client):
        run_id = await finished_run(runtime)
        assert (await client.get("/dashboard/")).status_code == 404
        assert (await client.get(f"/dashboard/runs/{run_id}")).status_code == 404


async def test_a_run_page_refused_answers_as_an_unknown_run_page(served):
    async with served(authorize_run_read=ops_only) as (runtime, client):
        run_id = await finished_run(runtime)
        unknown_id = "run_00000000000000000000000000"
        unknown = await client.get(f"/dashboard/runs/{unknown_id}")
        as_guest(client)
        refused = await client.get(f"/dashboard/runs/{run_id}")
        assert refused.status_code == unknown.status_code == 404
        assert error_of(refused)["code"] == "route_not_found"
        assert same_answer(refused, unknown) is False  # the paths differ...
        assert refused.text.replace(run_id, "ID") == unknown.text.replace(unknown_id, "ID")  # ...nothing else


async def test_a_run_page_needs_only_the_read_grant_and_says_whether_the_listing_is_granted(served):
    async with served(authorize_run_read=ops_only) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/dashboard/runs/{run_id}")
        assert response.status_code == 200
        data = page_data(response)
        assert data["runId"] == run_id and data["mayList"] is False and data["actions"] == []


async def test_a_page_holds_no_run_data_its_script_does_not_read_from_the_api(served):
    async with served(authorize_run_read=ops_only) as (runtime, client):
        receipt = await workflows.start(report, input={"secret": "s3cr3t"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        page = await client.get(f"/dashboard/runs/{receipt.run_id}")
        assert "s3cr3t" not in page.text and '"rows"' not in page.text


async def test_static_files_are_public_versioned_and_cached(served):
    async with served() as (_, client):
        page_less = await client.get("/dashboard/static/dashboard.css")
        assert page_less.status_code == 200 and page_less.headers["cache-control"] == "no-cache"
        versioned = await client.get("/dashboard/static/run.js?v=1")
        assert "immutable" in versioned.headers["cache-control"]
        assert versioned.headers["x-content-type-options"] == "nosniff"
        missing = await client.get("/dashboard/static/nothing.js")
        assert error_of(missing)["code"] == "route_not_found"


async def test_pages_forbid_framing_and_foreign_scripts(served):
    async with served(authorize_run_list=ops_only) as (_, client):
        response = await client.get("/dashboard/")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


async def test_the_dashboard_turns_the_listing_on(served):
    async with served(authorize_run_list=ops_only) as (runtime, client):
        run_id = await finished_run(runtime)
        listing = await client.get("/runs")
        assert [run["runId"] for run in listing.json()["runs"]] == [run_id]


async def test_the_dashboard_answers_under_its_prefix_and_under_a_mount(make_target):
    runtime = Runtime([report], target=make_target())
    inner = create_app(runtime, dashboard=True, dashboard_prefix="/ops/flue", authorize_run_list=ops_only)
    host = Starlette(routes=[Mount("/api", app=inner)])
    async with runtime, serve(host) as url, httpx.AsyncClient(base_url=url, cookies={"viewer": "ops"}) as client:
        response = await client.get("/api/ops/flue")
        assert response.status_code == 200
        data = page_data(response)
        assert (data["api"], data["base"]) == ("/api", "/api/ops/flue")
        assert '/api/ops/flue/static/runs.js?v=' in response.text


@pytest.mark.parametrize("prefix", ["", "/", "dashboard", "/dashboard/", "/runs", "/streams/ui", "/a b"])
def test_a_prefix_that_is_not_a_free_path_is_refused(prefix):
    with pytest.raises(ConfigurationError, match="dashboard_prefix"):
        create_app(Runtime([report]), dashboard=True, dashboard_prefix=prefix)


# -- actions ------------------------------------------------------------------------------------------


async def running_run(runtime: Runtime, gate: str) -> str:
    receipt = await workflows.start(report, input={"gate": gate}, runtime=runtime)
    while (await runs.get(receipt.run_id, runtime=runtime)).status != "running":
        await anyio.sleep(0.01)
    return receipt.run_id


async def page_token(client: httpx.AsyncClient, run_id: str) -> str:
    """Open the run's page as a browser would: its token, and the cookie it set in ``client``."""
    page = await client.get(f"/dashboard/runs/{run_id}")
    return page_data(page)["csrf"]


def same_origin(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    return {"origin": str(client.base_url).rstrip("/"), "sec-fetch-site": "same-origin", "x-flue-csrf": token}


async def test_cancel_from_the_page_cancels_the_run(served):
    with gates() as make_gate:
        async with served(authorize_run_read=ops_only, authorize_run_cancel=ops_only) as (runtime, client):
            run_id = await running_run(runtime, make_gate())
            token = await page_token(client, run_id)
            response = await client.post(f"/dashboard/runs/{run_id}/cancel", headers=same_origin(client, token))
            assert response.status_code == 200 and response.json()["cancelRequested"] is True
            assert (await runs.wait(run_id, timeout=5, runtime=runtime)).status == "cancelled"


async def test_a_run_page_offers_cancel_only_where_it_is_granted(served):
    async with served(authorize_run_read=ops_only, authorize_run_cancel=lambda request, run: None) as (runtime, client):
        run_id = await finished_run(runtime)
        assert page_data(await client.get(f"/dashboard/runs/{run_id}"))["actions"] == []


async def test_cancel_not_granted_is_403_and_changes_nothing(served):
    with gates() as make_gate:
        async with served(authorize_run_read=ops_only) as (runtime, client):
            run_id = await running_run(runtime, make_gate())
            token = await page_token(client, run_id)
            response = await client.post(f"/dashboard/runs/{run_id}/cancel", headers=same_origin(client, token))
            assert response.status_code == 403 and error_of(response)["code"] == "action_denied"
            assert (await runs.get(run_id, runtime=runtime)).cancel_requested is False


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"origin": "http://evil.example", "sec-fetch-site": "cross-site"}, id="another-site"),
        pytest.param({"origin": "http://127.0.0.1:1", "sec-fetch-site": "same-site"}, id="another-port"),
        pytest.param({"origin": None, "sec-fetch-site": None}, id="no-origin"),
        pytest.param({"x-flue-csrf": None}, id="no-token"),
        pytest.param({"x-flue-csrf": "A" * 43}, id="another-token"),
    ],
)
async def test_a_cancel_that_is_not_from_the_page_is_refused_and_changes_nothing(served, change):
    with gates() as make_gate:
        async with served(authorize_run_read=ops_only, authorize_run_cancel=ops_only) as (runtime, client):
            run_id = await running_run(runtime, make_gate())
            headers = {**same_origin(client, await page_token(client, run_id)), **change}
            headers = {name: value for name, value in headers.items() if value is not None}
            response = await client.post(f"/dashboard/runs/{run_id}/cancel", headers=headers)
            assert response.status_code == 403 and error_of(response)["code"] == "cross_site_request"
            assert (await runs.get(run_id, runtime=runtime)).cancel_requested is False


async def test_a_get_of_an_action_changes_nothing(served):
    with gates() as make_gate:
        async with served(authorize_run_read=ops_only, authorize_run_cancel=ops_only) as (runtime, client):
            run_id = await running_run(runtime, make_gate())
            response = await client.get(f"/dashboard/runs/{run_id}/cancel")
            assert response.status_code == 405 and response.headers["allow"] == "POST"
            assert (await runs.get(run_id, runtime=runtime)).cancel_requested is False


async def test_an_action_on_a_run_the_caller_may_not_read_is_an_unknown_route(served):
    with gates() as make_gate:
        async with served(authorize_run_read=ops_only, authorize_run_cancel=lambda request, run: True) as (runtime, client):
            run_id = await running_run(runtime, make_gate())
            as_guest(client)
            response = await client.post(f"/dashboard/runs/{run_id}/cancel")
            assert error_of(response)["code"] == "route_not_found"
            assert (await runs.get(run_id, runtime=runtime)).cancel_requested is False


async def test_an_unknown_action_is_an_unknown_route(served):
    async with served(authorize_run_read=ops_only) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.post(f"/dashboard/runs/{run_id}/delete")
        assert error_of(response)["code"] == "route_not_found"


async def test_the_page_keeps_the_browsers_token_so_other_tabs_stay_valid(served):
    async with served(authorize_run_read=ops_only) as (runtime, client):
        run_id = await finished_run(runtime)
        first = await page_token(client, run_id)
        second = await page_token(client, run_id)
        assert first == second
        cookie = (await client.get(f"/dashboard/runs/{run_id}")).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard/" in cookie


# -- a local dashboard's secret link ------------------------------------------------------------------


async def test_the_secret_link_sets_the_cookie_and_drops_the_token_from_the_address(make_target):
    access = LinkAccess()
    async with serve_app([report], make_target, dashboard=True, **access.app_options()) as (runtime, client):
        run_id = await finished_run(runtime)
        opened = await client.get(access.link(f"/dashboard/runs/{run_id}"))
        assert opened.status_code == 303 and opened.headers["location"] == f"/dashboard/runs/{run_id}"
        assert access.cookie in opened.cookies
        assert (await client.get(f"/dashboard/runs/{run_id}")).status_code == 200  # the cookie grants now
        assert (await client.get(f"/runs/{run_id}?meta")).status_code == 200


async def test_without_the_link_the_local_dashboard_shows_nothing(make_target):
    access = LinkAccess()
    async with serve_app([report], make_target, dashboard=True, **access.app_options()) as (runtime, client):
        run_id = await finished_run(runtime)
        assert (await client.get("/dashboard/?token=guess")).status_code == 404
        assert (await client.get(f"/runs/{run_id}?meta")).status_code == 404


async def test_the_token_also_works_as_a_bearer_token(make_target):
    access = LinkAccess("a-known-token")
    async with serve_app([report], make_target, dashboard=True, **access.app_options()) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}?meta", headers={"authorization": "Bearer a-known-token"})
        assert response.status_code == 200

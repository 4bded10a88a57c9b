"""Receipts of ``workflows.start()`` name the run's stream where the HTTP app really serves it: under the
prefix a host mounts the app at, given as ``Runtime(public_url=...)`` or learned from the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.errors import ConfigurationError
from flue_core.http import create_app, serve
from http_served import local_target

pytestmark = pytest.mark.anyio


@workflow(name="report", http=True)
async def report(ctx: RunContext) -> str:
    return "done"


@asynccontextmanager
async def host_app(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A host application served by uvicorn: the Flue app mounted at ``/flue`` (runs readable by
    anyone), and a route of its own, ``POST /schedule``, that starts a run with ``workflows.start()``."""

    async def schedule(request: Request) -> JSONResponse:
        receipt = await workflows.start(report, runtime=runtime)
        return JSONResponse(receipt.model_dump(mode="json"))

    flue = create_app(runtime, authorize_run_read=lambda request, run: True)
    host = Starlette(routes=[Route("/schedule", schedule, methods=["POST"]), Mount("/flue", app=flue)])
    async with runtime, serve(host) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def scheduled(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/schedule")
    assert response.status_code == 200
    return response.json()


async def test_a_public_url_puts_receipts_of_start_under_the_mount(tmp_path):
    runtime = Runtime([report], target=local_target("sqlite", tmp_path), public_url="/flue")
    async with host_app(runtime) as client:
        receipt = await scheduled(client)  # before the Flue app has served any request
        assert receipt["streamUrl"] == f"/flue/runs/{receipt['runId']}"
        await runs.wait(receipt["runId"], runtime=runtime)
        stream = await client.get(receipt["streamUrl"])
        assert stream.status_code == 200
        assert [event["type"] for event in stream.json()][-1] == "run_end"


async def test_without_a_public_url_the_mount_is_learned_from_the_first_request_served(tmp_path):
    runtime = Runtime([report], target=local_target("sqlite", tmp_path))
    async with host_app(runtime) as client:
        assert (await client.get("/flue/runs/run_unknown")).status_code == 404  # any request teaches
        receipt = await scheduled(client)
        assert receipt["streamUrl"] == f"/flue/runs/{receipt['runId']}"
        assert runtime.public_url == "/flue"
        await runs.wait(receipt["runId"], runtime=runtime)
        assert (await client.get(receipt["streamUrl"])).status_code == 200


async def test_a_given_public_url_wins_over_the_mount_while_http_receipts_follow_the_request(tmp_path):
    runtime = Runtime([report], target=local_target("memory", tmp_path), public_url="https://api.example.com/flue/")
    async with host_app(runtime) as client:
        over_http = await client.post("/flue/workflows/report")
        assert over_http.json()["streamUrl"] == f"/flue/runs/{over_http.json()['runId']}"
        receipt = await scheduled(client)
        assert receipt["streamUrl"] == f"https://api.example.com/flue/runs/{receipt['runId']}"


async def test_a_runtime_served_at_the_root_gives_root_receipts(tmp_path):
    runtime = Runtime([report], target=local_target("memory", tmp_path))
    async with runtime, serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
        await client.post("/workflows/report")
        receipt = await workflows.start(report, runtime=runtime)
        assert receipt.stream_url == f"/runs/{receipt.run_id}"


@pytest.mark.parametrize("value", ["flue", "", "//evil.example/flue", "ftp://host/flue", "/flue?x=1", "/flue#top", 5])
def test_a_public_url_that_is_not_an_absolute_path_or_http_url_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError):
        Runtime([report], store="memory://", public_url=value)

"""Run event streams through the app: ``GET|HEAD /runs/{run_id}`` after authorisation, end to end.

The Durable Streams protocol itself is tested in ``test_streams_runs.py``; these tests check that the
app serves it behind its authorisation and mount prefix: catch-up, long-poll, SSE, HEAD, and the 404
an unauthorised reader gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import EventSource
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from flue_core import RunContext, Runtime, runs, workflow
from flue_core.http import create_app, serve
from flue_core.streams import ReadOptions
from flue_node_like import LocalTarget
from http_served import STORES, error_of, local_target
from http_served import served as serve_app

pytestmark = pytest.mark.anyio
GATES: dict[str, anyio.Event] = {}
READER = {"x-reader": "yes"}


@workflow(name="hold", http=True)
async def hold(ctx: RunContext, input: dict) -> str:
    ctx.emit("waiting", {"gate": input["gate"]})
    await GATES[input["gate"]].wait()
    ctx.emit("released", {"gate": input["gate"]})
    return "released"


def readers(request: Request, run) -> bool:
    return request.headers.get("x-reader") == "yes"


@pytest.fixture(params=STORES)
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LocalTarget]:
    return lambda: local_target(request.param, tmp_path, request)


@pytest.fixture
def served(make_target: Callable[[], LocalTarget]) -> Callable[..., Any]:
    return partial(serve_app, [hold], make_target, authorize_run_read=readers, stream_options=ReadOptions(long_poll_timeout=5))


@pytest.fixture
def gate() -> Any:
    name = uuid.uuid4().hex
    GATES[name] = anyio.Event()
    yield name
    GATES.pop(name).set()


async def admitted(client: httpx.AsyncClient, gate: str, prefix: str = "") -> dict[str, Any]:
    response = await client.post(f"{prefix}/workflows/hold", json={"gate": gate})
    assert response.status_code == 202
    return response.json()


async def waiting_offset(runtime: Runtime, run_id: str) -> str:
    """The offset of the run's ``waiting`` event, once it is stored."""
    with anyio.fail_after(5):
        async for event in runs.events(run_id, follow=True, runtime=runtime):
            if event.type == "waiting":
                break
    await runtime.target.store.flush()
    return event.offset


async def test_a_granted_reader_catches_up_on_the_stream_from_the_receipt(served, gate):
    async with served() as (runtime, client):
        receipt = await admitted(client, gate)
        GATES[gate].set()
        await runs.wait(receipt["runId"], timeout=5, runtime=runtime)
        response = await client.get(receipt["streamUrl"], params={"offset": receipt["offset"]}, headers=READER)
        assert response.status_code == 200
        assert [e["type"] for e in response.json()] == ["run_queued", "run_start", "waiting", "released", "run_end"]
        assert response.headers["stream-closed"] == "true"


async def test_an_unauthorised_stream_reader_gets_the_same_404_as_for_an_unknown_run(served, gate):
    async with served() as (_, client):
        run_id = (await admitted(client, gate))["runId"]
        unknown_id = "run_00000000000000000000000000"
        for params in ({}, {"offset": "-1"}, {"live": "long-poll", "offset": "now"}, {"live": "sse"}):
            forbidden = await client.get(f"/runs/{run_id}", params=params)
            unknown = await client.get(f"/runs/{unknown_id}", params=params, headers=READER)
            assert forbidden.status_code == unknown.status_code == 404
            assert forbidden.text.replace(run_id, "ID") == unknown.text.replace(unknown_id, "ID")
            assert error_of(forbidden)["code"] == "run_not_found"


async def test_head_gives_a_granted_reader_the_stream_metadata(served, gate):
    async with served() as (runtime, client):
        run_id = (await admitted(client, gate))["runId"]
        offset = await waiting_offset(runtime, run_id)
        response = await client.head(f"/runs/{run_id}", headers=READER)
        assert response.status_code == 200
        assert response.headers["stream-next-offset"] == offset
        assert "stream-closed" not in response.headers
        assert (await client.head(f"/runs/{run_id}")).status_code == 404


async def test_a_long_poll_is_woken_by_an_event_appended_from_another_task(served, gate):
    async with served() as (runtime, client):
        run_id = (await admitted(client, gate))["runId"]
        offset = await waiting_offset(runtime, run_id)

        async def release_later() -> None:
            await anyio.sleep(0.2)
            GATES[gate].set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(release_later)
            started = anyio.current_time()
            response = await client.get(
                f"/runs/{run_id}", params={"offset": offset, "live": "long-poll"}, headers=READER
            )
            waited = anyio.current_time() - started
        assert response.status_code == 200
        # It waited for the event rather than answering at once, and was woken by its notification:
        # a shared store's re-read (the only other wake-up) comes a whole second after the wait began.
        assert 0.15 <= waited < 0.5
        assert response.json()[0]["type"] == "released"


async def test_sse_follows_the_run_to_its_end(served, gate):
    async with served() as (runtime, client):
        run_id = (await admitted(client, gate))["runId"]
        await waiting_offset(runtime, run_id)
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": "-1", "live": "sse"}, headers=READER) as response:
            assert response.status_code == 200
            GATES[gate].set()
            with anyio.fail_after(5):
                frames = [(sse.event, sse.json()) async for sse in EventSource(response).aiter_sse()]
        events = [event["type"] for name, data in frames if name == "data" for event in data]
        assert events == ["run_queued", "run_start", "waiting", "released", "run_end"]
        name, control = frames[-1]
        assert name == "control" and control["streamClosed"] is True and "streamCursor" not in control


async def test_the_stream_url_of_a_mounted_app_reads_the_stream(make_target, gate):
    runtime = Runtime([hold], target=make_target())
    host = Starlette(routes=[Mount("/flue", app=create_app(runtime, authorize_run_read=readers))])
    async with runtime, serve(host) as url, httpx.AsyncClient(base_url=url) as client:
        receipt = await admitted(client, gate, prefix="/flue")
        assert receipt["streamUrl"].startswith("/flue/runs/")
        GATES[gate].set()
        await runs.wait(receipt["runId"], timeout=5, runtime=runtime)
        response = await client.get(receipt["streamUrl"], headers=READER)
        assert response.json()[-1]["type"] == "run_end"
        meta = await client.get(receipt["streamUrl"] + "?meta", headers=READER)
        assert meta.json()["status"] == "completed"

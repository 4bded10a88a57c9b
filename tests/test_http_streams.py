"""General Durable Streams through the app: ``create_app(runtime, streams=store)`` mounts the stream
server at ``/streams``, end to end (uvicorn, httpx), on the memory and SQLite stream stores.

The protocol itself is tested in ``test_streams_server.py`` and by the conformance suite; these tests
check the mount, its lifetime and that the app's middleware guards it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from flue_core import Runtime
from flue_core.errors import ConfigurationError, StoreUnavailable
from flue_core.http import create_app, serve
from flue_core.streams.store import StreamStore
from flue_node_like.streams_memory import MemoryStreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore
from http_served import STORES, error_of, local_target

pytestmark = pytest.mark.anyio
TEXT = {"content-type": "text/plain"}


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def runtime(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Runtime:
    return Runtime([], target=local_target(backend, tmp_path, request))


@pytest.fixture
def stream_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StreamStore:
    # SQLite streams share the run store's file, Redis streams its server and prefix, as a deployment would.
    if backend == "redis":
        return RedisStreamStore(request.getfixturevalue("redis_url"))
    return MemoryStreamStore() if backend == "memory" else SqliteStreamStore(tmp_path / "flue.db")


@asynccontextmanager
async def client_of(app: ASGIApp, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app, **options) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_the_app_serves_general_streams_under_streams(runtime: Runtime, stream_store: StreamStore) -> None:
    app = create_app(runtime, open_runtime=True, streams=stream_store)
    async with client_of(app, lifespan="on") as client:
        created = await client.put("/streams/jobs/7", headers=TEXT, content=b"step 1\n")
        appended = await client.post("/streams/jobs/7", headers={**TEXT, "stream-closed": "true"}, content=b"step 2\n")
        read = await client.get("/streams/jobs/7", params={"offset": "-1"})
    assert created.status_code == 201
    assert created.headers["location"].endswith("/streams/jobs/7")
    assert appended.status_code == 204
    assert read.text == "step 1\nstep 2\n"
    assert read.headers["stream-closed"] == "true"


async def test_the_apps_lifespan_opens_and_closes_the_stream_store(runtime: Runtime, stream_store: StreamStore) -> None:
    app = create_app(runtime, open_runtime=True, streams=stream_store)
    async with client_of(app, lifespan="on") as client:
        assert (await client.put("/streams/a", headers=TEXT)).status_code == 201
    with pytest.raises(StoreUnavailable):
        await stream_store.head("/a")


async def test_streams_answer_503_until_the_host_opens_them(runtime: Runtime, stream_store: StreamStore) -> None:
    app = create_app(runtime, streams=stream_store)
    async with runtime, client_of(app) as client:
        closed = await client.put("/streams/a", headers=TEXT)
        async with app.state.streams:
            opened = await client.put("/streams/a", headers=TEXT)
    assert closed.status_code == 503 and error_of(closed)["code"] == "store_unavailable"
    assert opened.status_code == 201


async def test_a_host_that_mounts_the_app_opens_the_streams_in_its_lifespan(
    runtime: Runtime, stream_store: StreamStore
) -> None:
    flue = create_app(runtime, streams=stream_store)

    @asynccontextmanager
    async def lifespan(host: Starlette) -> AsyncIterator[None]:
        async with runtime, flue.state.streams:
            yield

    host = Starlette(routes=[Mount("/flue", app=flue)], lifespan=lifespan)
    async with client_of(host, lifespan="on") as client:
        await client.put("/flue/streams/a", headers=TEXT, content=b"abc")
        fork = await client.put("/flue/streams/b", headers={"stream-forked-from": "/flue/streams/a"})
        read = await client.get("/flue/streams/b", params={"offset": "-1"})
    assert fork.status_code == 201
    assert read.text == "abc"


class RequireKey:
    """App-level middleware: 401 without ``x-key``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"x-key", b"yes") not in scope["headers"]:
            await PlainTextResponse("Send x-key.", status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def test_the_apps_middleware_guards_the_streams(runtime: Runtime, stream_store: StreamStore) -> None:
    app = create_app(runtime, open_runtime=True, streams=stream_store, middleware=[Middleware(RequireKey)])
    async with client_of(app, lifespan="on") as client:
        refused = await client.put("/streams/a", headers=TEXT)
        allowed = await client.put("/streams/a", headers={**TEXT, "x-key": "yes"})
    assert refused.status_code == 401
    assert allowed.status_code == 201


async def test_without_streams_the_app_has_no_stream_routes(runtime: Runtime) -> None:
    app = create_app(runtime, open_runtime=True)
    async with client_of(app, lifespan="on") as client:
        response = await client.put("/streams/a", headers=TEXT)
    assert response.status_code == 404 and error_of(response)["code"] == "route_not_found"
    assert app.state.streams is None


async def test_streams_that_are_not_a_stream_store_are_refused(runtime: Runtime) -> None:
    with pytest.raises(ConfigurationError):
        create_app(runtime, streams="sqlite:///.flue/flue.db")  # type: ignore[arg-type]

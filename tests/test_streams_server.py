"""The general stream server over HTTP (what the conformance suite does not pin down): mounting under
a prefix, the error envelope and its protocol headers, CORS, limits, lifetime, and live reads woken by
appends from another client. uvicorn on 127.0.0.1, httpx, memory, SQLite and Redis stores."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import EventSource
from starlette.applications import Starlette
from starlette.routing import Mount

from flue_core.http import serve
from flue_core.streams import ReadOptions
from flue_core.streams.server import streams_app
from flue_node_like.streams_memory import MemoryStreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore

pytestmark = pytest.mark.anyio
TEXT = {"content-type": "text/plain"}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "redis":
        return RedisStreamStore(request.getfixturevalue("redis_url"))
    return MemoryStreamStore() if request.param == "memory" else SqliteStreamStore(tmp_path / "streams.db")


@asynccontextmanager
async def mounted(store: Any, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The stream server mounted at ``/streams`` of a host app; the host opens it (a Mount runs no
    lifespan). The client's base URL is the server root."""
    streams = streams_app(store, open_store=False, **options)
    host = Starlette(routes=[Mount("/streams", app=streams)])
    async with streams.state.streams, serve(host, timeout_graceful_shutdown=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client


# -- mounting ----------------------------------------------------------------------------------------


async def test_streams_live_under_the_mount_prefix(store: Any) -> None:
    async with mounted(store) as client:
        created = await client.put("/streams/chat/1", headers=TEXT, content=b"hi")
        read = await client.get("/streams/chat/1")
    assert created.status_code == 201
    assert created.headers["location"] == f"{client.base_url}/streams/chat/1"
    assert read.text == "hi"


@pytest.mark.parametrize("source", ["/chat/1", "/streams/chat/1", "chat/1"])
async def test_a_fork_source_may_be_named_with_or_without_the_mount_prefix(store: Any, source: str) -> None:
    async with mounted(store) as client:
        await client.put("/streams/chat/1", headers=TEXT, content=b"hi")
        forked = await client.put("/streams/chat/2", headers={"Stream-Forked-From": source})
        read = await client.get("/streams/chat/2")
    assert forked.status_code == 201 and read.text == "hi"


async def test_the_app_serves_on_its_own_and_opens_the_store_in_its_lifespan(store: Any) -> None:
    app = streams_app(store)
    async with serve(app, lifespan="on", timeout_graceful_shutdown=1) as url, httpx.AsyncClient(base_url=url) as client:
        created = await client.put("/a", headers=TEXT, content=b"x")
    assert created.status_code == 201


async def test_requests_before_the_server_is_opened_get_503(store: Any) -> None:
    app = streams_app(store, open_store=False)
    async with serve(app, timeout_graceful_shutdown=1) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.put("/a", headers=TEXT)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


# -- errors ------------------------------------------------------------------------------------------


async def test_an_unknown_stream_is_a_404_envelope(store: Any) -> None:
    async with mounted(store) as client:
        response = await client.get("/streams/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "stream_not_found"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"


async def test_an_append_to_a_closed_stream_carries_stream_closed_and_the_final_offset(store: Any) -> None:
    async with mounted(store) as client:
        await client.put("/streams/a", headers={**TEXT, "Stream-Closed": "true"}, content=b"end")
        response = await client.post("/streams/a", headers=TEXT, content=b"more")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stream_closed"
    assert response.headers["stream-closed"] == "true"
    assert response.headers["stream-next-offset"] == "0000000000000000_0000000000000001"


async def test_producer_refusals_carry_the_producer_headers(store: Any) -> None:
    def producer(epoch: int, seq: int) -> dict[str, str]:
        return {**TEXT, "Producer-Id": "p", "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}

    async with mounted(store) as client:
        await client.put("/streams/a", headers=TEXT)
        accepted = await client.post("/streams/a", headers=producer(1, 0), content=b"x")
        stale = await client.post("/streams/a", headers=producer(0, 0), content=b"x")
        gap = await client.post("/streams/a", headers=producer(1, 5), content=b"x")
        duplicate = await client.post("/streams/a", headers=producer(1, 0), content=b"x")
    assert (accepted.status_code, accepted.headers["producer-epoch"], accepted.headers["producer-seq"]) == (200, "1", "0")
    assert stale.status_code == 403 and stale.headers["producer-epoch"] == "1"
    assert stale.json()["error"]["code"] == "producer_epoch_stale"
    assert gap.status_code == 409 and gap.json()["error"]["code"] == "producer_sequence_gap"
    assert (gap.headers["producer-expected-seq"], gap.headers["producer-received-seq"]) == ("1", "5")
    assert duplicate.status_code == 204


@pytest.mark.parametrize(
    ("headers", "header"),
    [
        ({"Stream-TTL": "01"}, "Stream-TTL"),
        ({"Stream-Expires-At": "tomorrow"}, "Stream-Expires-At"),
        ({"Stream-Fork-Offset": "0000000000000000_0000000000000000"}, "Stream-Fork-Offset"),
        ({"Stream-Fork-Sub-Offset": "0"}, "Stream-Fork-Sub-Offset"),
        ({"Content-Type": "not a media type"}, "Content-Type"),
    ],
)
async def test_a_malformed_create_header_is_a_400_naming_it(store: Any, headers: dict[str, str], header: str) -> None:
    async with mounted(store) as client:
        response = await client.put("/streams/a", headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_stream_request" and error["details"]["header"] == header


@pytest.mark.parametrize(
    "headers",
    [
        {"Producer-Id": "p"},
        {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "1e3", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": str(2**53)},
        {"Stream-Seq": ""},
    ],
)
async def test_a_malformed_append_header_is_a_400(store: Any, headers: dict[str, str]) -> None:
    async with mounted(store) as client:
        await client.put("/streams/a", headers=TEXT)
        response = await client.post("/streams/a", headers={**TEXT, **headers}, content=b"x")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_stream_request"


async def test_an_append_without_content_type_is_a_400(store: Any) -> None:
    async with mounted(store) as client:
        await client.put("/streams/a", headers=TEXT)
        response = await client.post("/streams/a", content=b"x")
    assert response.status_code == 400


async def test_an_append_over_the_size_limit_is_a_413(store: Any) -> None:
    async with mounted(store, max_append_bytes=1024) as client:
        await client.put("/streams/a", headers=TEXT)
        response = await client.post("/streams/a", headers=TEXT, content=b"x" * 1025)
        fits = await client.post("/streams/a", headers=TEXT, content=b"x" * 1024)
    assert response.status_code == 413 and fits.status_code == 204


async def test_another_method_is_a_405_with_allow(store: Any) -> None:
    async with mounted(store) as client:
        response = await client.request("PATCH", "/streams/a")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, PUT, POST, DELETE, OPTIONS"


# -- CORS --------------------------------------------------------------------------------------------


async def test_a_preflight_allows_the_protocol_headers(store: Any) -> None:
    async with mounted(store) as client:
        response = await client.options(
            "/streams/a",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "producer-id, if-none-match"},
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-headers"] == "producer-id, if-none-match"
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_responses_expose_the_protocol_headers_to_browsers(store: Any) -> None:
    async with mounted(store) as client:
        response = await client.put("/streams/a", headers=TEXT)
    exposed = response.headers["access-control-expose-headers"]
    assert "stream-next-offset" in exposed and "producer-epoch" in exposed and "etag" in exposed


async def test_cors_can_be_switched_off(store: Any) -> None:
    async with mounted(store, cors_origin=None) as client:
        preflight = await client.options("/streams/a")
        created = await client.put("/streams/a", headers=TEXT)
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in created.headers


# -- live reads --------------------------------------------------------------------------------------


async def test_a_long_poll_is_woken_by_an_append_from_another_client(store: Any) -> None:
    async with mounted(store) as client:
        created = await client.put("/streams/a", headers=TEXT, content=b"first")
        tail = created.headers["stream-next-offset"]
        appended_at: list[float] = []

        async def append_later() -> None:
            await anyio.sleep(0.3)
            async with httpx.AsyncClient(base_url=client.base_url) as other:
                appended_at.append(time.monotonic())
                await other.post("/streams/a", headers=TEXT, content=b"second")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(append_later)
            response = await client.get("/streams/a", params={"offset": tail, "live": "long-poll"})
        answered = time.monotonic()
    assert response.status_code == 200 and response.text == "second"
    assert answered - appended_at[0] < 0.5  # woken by the append (a re-read would come 0.7 s later)


async def test_an_sse_reader_receives_appends_and_the_close(store: Any) -> None:
    async with mounted(store) as client:
        await client.put("/streams/j", headers={"content-type": "application/json"})
        received: list[Any] = []

        async def write() -> None:
            await anyio.sleep(0.2)
            await client.post("/streams/j", headers={"content-type": "application/json"}, content=b'[{"n":1},{"n":2}]')
            await client.post("/streams/j", headers={"Stream-Closed": "true"})

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write)
            async with client.stream("GET", "/streams/j", params={"offset": "-1", "live": "sse"}) as response:
                async for sse in EventSource(response).aiter_sse():
                    received.append((sse.event, sse.json()))
    assert [payload for event, payload in received if event == "data"] == [[{"n": 1}, {"n": 2}]]
    assert received[-1][1]["streamClosed"] is True


async def test_a_deleted_stream_ends_its_live_readers(store: Any) -> None:
    async with mounted(store, read_options=ReadOptions(long_poll_timeout=5)) as client:
        await client.put("/streams/a", headers=TEXT)

        async def delete_later() -> None:
            await anyio.sleep(0.2)
            await client.delete("/streams/a")

        started = time.monotonic()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(delete_later)
            response = await client.get("/streams/a", params={"offset": "now", "live": "long-poll"})
    assert response.status_code == 404
    assert time.monotonic() - started < 2

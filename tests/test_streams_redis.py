"""What the Redis stream store promises beyond the contract suite (tests/test_streams_stores.py): its data
outlives the process and a Redis restart (AOF), it serves again once Redis is back, its script is loaded
again when Redis forgets it, data of another layout is refused, and a reader served over HTTP by one
process is woken by another process's append within milliseconds. Real redis-server, real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import Mount

from flue_core.errors import StoreUnavailable, UnsupportedSchemaVersion
from flue_core.http import serve
from flue_core.runs import RECHECK_SHARED
from flue_core.streams.server import streams_app
from flue_core.streams.store import Fork, NewStream
from flue_core.streams.testing import Notified, content, text
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.redis_server import RedisServer

pytestmark = pytest.mark.anyio
WRITER = Path(__file__).with_name("stream_writer.py")


async def opened(url: str) -> RedisStreamStore:
    store = RedisStreamStore(url)
    await store.open(Notified())
    return store


async def test_streams_outlive_the_store_that_wrote_them(redis_url: str) -> None:
    first = await opened(redis_url)
    await first.create("/a", NewStream("text/plain", data=b"kept"))
    await first.append("/a", text("!", close=True))
    await first.close()
    second = await opened(redis_url)
    try:
        assert (await second.head("/a")).closed and await content(second, "/a") == b"kept!"
    finally:
        await second.close()


async def test_acknowledged_writes_survive_a_kill_9_of_redis(own_redis_server: RedisServer) -> None:
    store = await opened(own_redis_server.url(prefix="app"))  # the server runs with appendfsync always
    try:
        await store.create("/a", NewStream("application/json", data=b'[{"n":1},{"n":2}]'))
        await store.create("/f", NewStream(fork=Fork("/a", 0, 1)))
        own_redis_server.restart(kill=True)
        page = await store.read("/f", -1, 10, 1 << 20)
        assert page.records == [b'{"n":1}'] and (await store.head("/a")).tail == 1
    finally:
        await store.close()


async def test_a_write_while_redis_is_down_is_store_unavailable_and_the_next_one_works(own_redis_server: RedisServer) -> None:
    store = await opened(own_redis_server.url(prefix="app") + "&connect_timeout=0.5")
    try:
        await store.create("/a", NewStream("text/plain"))
        own_redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await store.append("/a", text("lost"))
        own_redis_server.start()
        await store.append("/a", text("kept"))
        assert await content(store, "/a") == b"kept"
    finally:
        await store.close()


async def test_the_script_is_loaded_again_when_redis_forgot_it(redis_server: RedisServer, redis_url: str) -> None:
    store = await opened(redis_url)
    admin = aioredis.Redis(port=redis_server.port)
    try:
        await admin.script_flush()
        assert (await store.create("/a", NewStream("text/plain"))).created
    finally:
        await admin.aclose()
        await store.close()


async def test_streams_written_in_another_layout_are_refused_at_open(redis_server: RedisServer, redis_url: str) -> None:
    admin = aioredis.Redis(port=redis_server.port)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    try:
        await admin.set(f"{prefix}:ds:layout", "99")
        store = RedisStreamStore(redis_url)
        with pytest.raises(UnsupportedSchemaVersion):
            await store.open(Notified())
    finally:
        await admin.aclose()


async def test_a_long_poll_is_woken_by_another_process_within_milliseconds(redis_url: str) -> None:
    store = await opened(redis_url)
    await store.create("/chat", NewStream("text/plain"))
    await store.close()
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), redis_url, "/chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready"
        app = streams_app(RedisStreamStore(redis_url), open_store=False)
        async with app.state.streams, serve(Starlette(routes=[Mount("/s", app=app)])) as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client, anyio.create_task_group() as tasks:
                answers: list[tuple[float, httpx.Response]] = []

                async def long_poll() -> None:
                    response = await client.get("/s/chat", params={"offset": "-1", "live": "long-poll"})
                    answers.append((time.monotonic(), response))

                tasks.start_soon(long_poll)
                await anyio.sleep(0.3)  # the reader waits; its own re-read would come only after RECHECK_SHARED
                writer.stdin.write("hello\n")
                writer.stdin.flush()
                sent = float(await anyio.to_thread.run_sync(writer.stdout.readline))
        (answered, response), = answers
    finally:
        writer.stdin.close()  # type: ignore[union-attr]
        writer.wait(10)
    assert response.status_code == 200 and response.text == "hello\n"
    assert answered - sent < RECHECK_SHARED / 2

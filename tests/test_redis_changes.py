"""The Redis stream store's change feed (one channel, ``Subscriptions`` with ``feed=``): what one process
writes wakes readers in every other within milliseconds, and a feed that lost Redis (connection cut,
server restarted, peer gone silent) subscribes again and tells every reader to read again. Real
redis-server processes; each store instance stands for a process. The run store's per-key
subscriptions: tests/test_redis_store.py and tests/test_redis_processes.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable

import anyio
import pytest
import redis.asyncio as aioredis

from flue_core.changes import Changes
from flue_core.store import EVERYTHING
from flue_core.streams.store import NewStream
from flue_core.streams.testing import text
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.redis_server import RedisServer

pytestmark = pytest.mark.anyio


class Heard:
    """A change listener that remembers what it heard and lets a test wait for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, tuple[str, ...]]] = []
        self._changed = anyio.Event()

    def __call__(self, ids: Iterable[str]) -> None:
        self.calls.append((time.monotonic(), tuple(ids)))
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def everything(self) -> int:
        return sum(1 for _, ids in self.calls if ids == EVERYTHING)

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()

    def ids(self) -> list[str]:
        return [i for _, ids in self.calls if ids != EVERYTHING for i in ids]


async def opened(url: str, listener: Callable[[Iterable[str]], None], **options: float) -> RedisStreamStore:
    store = RedisStreamStore(url, **options)
    await store.open(listener)
    return store


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisStreamStore, RedisStreamStore, Heard]]:
    """A writer and a reader store on the same data, as two processes would be; what the reader heard."""
    heard = Heard()
    writer = await opened(redis_url, lambda ids: None)
    reader = await opened(redis_url, heard)
    try:
        yield writer, reader, heard
    finally:
        await reader.close()
        await writer.close()


async def test_a_change_made_elsewhere_reaches_the_listener_within_milliseconds(pair: tuple) -> None:
    writer, _, heard = pair
    sent = time.monotonic()
    await writer.create("/a", NewStream("text/plain"))
    await heard.until(lambda: heard.ids() == ["/a"])
    assert heard.calls[0][0] - sent < 0.25  # typically ~1 ms; the margin is for a loaded machine


async def test_every_change_made_elsewhere_is_heard_in_order(pair: tuple) -> None:
    writer, _, heard = pair
    await writer.create("/a", NewStream("text/plain"))
    for n in range(20):
        await writer.append("/a", text(str(n)))
    await writer.delete("/a")
    await heard.until(lambda: len(heard.ids()) == 22)
    assert heard.ids() == ["/a"] * 22


async def test_a_refused_write_elsewhere_is_not_heard(pair: tuple) -> None:
    writer, _, heard = pair
    await writer.create("/a", NewStream("text/plain", closed=True))
    await heard.until(lambda: heard.ids() == ["/a"])
    with pytest.raises(Exception):
        await writer.append("/a", text("x"))
    await writer.create("/b", NewStream("text/plain"))
    await heard.until(lambda: heard.ids() == ["/a", "/b"])


async def test_another_prefix_is_another_application(redis_server: RedisServer) -> None:
    heard = Heard()
    billing = await opened(redis_server.url(prefix="billing"), lambda ids: None)
    shop = await opened(redis_server.url(prefix="shop"), heard)
    try:
        await billing.create("/a", NewStream("text/plain", data=b"x"))
        await shop.create("/b", NewStream("text/plain"))  # heard by nobody else; a marker that shop is live
        with pytest.raises(Exception, match="No stream"):
            await shop.head("/a")
        assert heard.ids() == ["/b"]
    finally:
        await shop.close()
        await billing.close()


async def test_a_cut_subscription_is_made_again_and_every_reader_reads_again(redis_server: RedisServer, redis_url: str) -> None:
    changes = Changes()
    reader = await opened(redis_url, changes.notify)
    writer = await opened(redis_url, lambda ids: None)
    admin = aioredis.Redis(port=redis_server.port)
    try:
        with changes.watch("/a") as on_a, changes.watch("/b") as on_b:
            await admin.client_kill_filter(_type="pubsub")
            with anyio.fail_after(5):  # told to read again, though nothing was written
                assert await on_a.wait(5) and await on_b.wait(5)
            assert reader.feed is not None and reader.feed.reconnects == 1
            await writer.create("/a", NewStream("text/plain"))  # and hears writes as before
            assert await on_a.wait(2)
    finally:
        await admin.aclose()
        await writer.close()
        await reader.close()


async def test_after_redis_restarts_the_feed_resubscribes_and_tells_everything(own_redis_server: RedisServer) -> None:
    heard = Heard()
    url = own_redis_server.url(prefix="app")
    reader = await opened(url, heard)
    try:
        own_redis_server.restart(kill=True)
        await heard.until(lambda: heard.everything == 1)
        writer = await opened(url, lambda ids: None)
        await writer.create("/after", NewStream("text/plain"))
        await writer.close()
        await heard.until(lambda: heard.ids() == ["/after"])
    finally:
        await reader.close()


async def test_a_feed_whose_server_stops_answering_is_replaced(redis_server: RedisServer, redis_url: str) -> None:
    heard = Heard()
    reader = await opened(redis_url, heard, heartbeat=0.1)
    admin = aioredis.Redis(port=redis_server.port)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "800", "ALL")  # the server says nothing for 0.8 s
        await heard.until(lambda: heard.everything == 1)
        assert reader.feed is not None and reader.feed.reconnects == 1
    finally:
        await admin.aclose()
        await reader.close()


async def test_a_malformed_message_on_the_channel_is_ignored(redis_server: RedisServer, pair: tuple) -> None:
    writer, reader, heard = pair
    admin = aioredis.Redis(port=redis_server.port)
    try:
        assert reader.feed is not None
        await admin.publish(reader.feed.base + reader.feed.feed, b"not json")
        await writer.create("/a", NewStream("text/plain"))
        await heard.until(lambda: heard.ids() == ["/a"])
    finally:
        await admin.aclose()

"""The StreamStore contract suite on the memory, SQLite and Redis stream stores, and what only SQLite
promises (Redis' own promises: tests/test_streams_redis.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from flue_core.streams.store import NewStream
from flue_core.streams.testing import Clock, Notified, StreamStoreContract, content, text
from flue_node_like import SqliteStore
from flue_node_like.streams_memory import MemoryStreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (as the run store's writer does mid-batch)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


class TestMemoryStreamStore(StreamStoreContract):
    @pytest.fixture
    def make_store(self) -> Any:
        return lambda clock: MemoryStreamStore(clock=clock)


class TestRedisStreamStore(StreamStoreContract):
    @pytest.fixture
    def make_store(self, redis_url: str) -> Any:
        return lambda clock: RedisStreamStore(redis_url, clock=clock)


class TestSqliteStreamStore(StreamStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Any:
        return lambda clock: SqliteStreamStore(tmp_path / "streams.db", clock=clock)

    async def test_streams_survive_closing_and_reopening_the_store(self, tmp_path: Path) -> None:
        first = SqliteStreamStore(tmp_path / "streams.db")
        await first.open(Notified())
        await first.create("/a", NewStream("text/plain", data=b"kept"))
        await first.append("/a", text("!", close=True))
        await first.close()
        second = SqliteStreamStore(f"sqlite:///{tmp_path / 'streams.db'}")
        await second.open(Notified())
        try:
            meta = await second.head("/a")
            assert meta.closed and await content(second, "/a") == b"kept!"
        finally:
            await second.close()

    async def test_it_shares_a_database_file_with_the_run_store(self, tmp_path: Path) -> None:
        runs, streams = SqliteStore(tmp_path / "flue.db"), SqliteStreamStore(tmp_path / "flue.db", clock=Clock())
        await runs.open(lambda run_ids: None)
        await streams.open(Notified())
        try:
            await streams.create("/a", NewStream("text/plain", data=b"x"))
            assert await runs.get("run_unknown") is None
            assert await content(streams, "/a") == b"x"
        finally:
            await streams.close()
            await runs.close()

    async def test_reads_and_head_do_not_wait_for_the_write_lock(self, tmp_path: Path) -> None:
        store = SqliteStreamStore(tmp_path / "flue.db", clock=Clock())
        await store.open(Notified())
        try:
            await store.create("/a", NewStream("text/plain", data=b"x"))
            with write_lock_held(tmp_path / "flue.db"), anyio.fail_after(2):
                assert (await store.head("/a")).tail == 1
                assert await content(store, "/a") == b"x"
        finally:
            await store.close()

    async def test_purging_with_nothing_expired_does_not_wait_for_the_write_lock(self, tmp_path: Path) -> None:
        store = SqliteStreamStore(tmp_path / "flue.db", clock=Clock())
        await store.open(Notified())
        try:
            await store.create("/a", NewStream("text/plain", ttl=60))
            with write_lock_held(tmp_path / "flue.db"), anyio.fail_after(2):
                assert await store.purge_expired() == 0
        finally:
            await store.close()

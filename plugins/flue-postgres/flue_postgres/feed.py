"""Hearing other processes' changes: ``LISTEN`` on the store's channel, on a connection of its own.

Every batch of writes announces what it changed on the channel, in its own transaction, so a change
is heard exactly when it is committed (``sql/runs.sql``). A payload is the writing store's origin
then the changed keys; a store skips its own (its listener heard of them already). The channel
carries every change of the schema: a process filters what it hears by what it watches, which is
cheaper than subscribing per key (Postgres matches channels by a list scan per listener).

``LISTEN`` keeps nothing for a listener that is away, so when the connection breaks the feed
connects again (backing off to a second while the server is away), listens again, and passes
:data:`~flue_core.store.EVERYTHING`: every reader, worker and scheduler looks again. A silent
connection is probed every ``heartbeat`` seconds and replaced when no answer comes within another
``heartbeat`` (a server gone without a word).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import asyncpg

from flue_core.store import EVERYTHING
from flue_postgres.connection import MAX_BACKOFF, close_quietly, connect
from flue_postgres.settings import PostgresSettings

log = logging.getLogger("flue.postgres")

__all__ = ["Feed"]

Parse = Callable[[str], tuple[str, Iterable[str]] | None]


def _keys(payload: str) -> tuple[str, Iterable[str]] | None:
    origin, _, keys = payload.partition(" ")
    return origin, keys.split(" ") if keys else ()


class Feed:
    """Listens on ``channel`` and passes each payload's keys (``parse``: origin and keys) to the
    listener given to :meth:`start`, unless they came from ``origin``."""

    def __init__(
        self,
        settings: PostgresSettings,
        channel: str,
        origin: str,
        *,
        heartbeat: float = 5.0,
        parse: Parse = _keys,
        everything: Iterable[str] = EVERYTHING,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.origin = origin
        self.heartbeat = heartbeat
        self.parse = parse
        self.everything = tuple(everything)
        #: How many times the feed connected again after losing its connection.
        self.reconnects = 0
        self._listener: Callable[[Iterable[str]], None] = lambda keys: None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, listener: Callable[[Iterable[str]], None]) -> None:
        """Listen (raising the typed errors of :func:`~flue_postgres.connection.connect`); once this
        returns, nothing committed afterwards is missed."""
        self._listener = listener
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"flue-postgres-feed:{self.channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conn, self._conn = self._conn, None
        await close_quietly(conn)

    async def _connect(self) -> None:
        conn = await connect(self.settings, purpose="feed")
        try:
            self._lost.clear()
            conn.add_termination_listener(lambda _: self._lost.set())
            await conn.add_listener(self.channel, self._heard)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    def _heard(self, conn: object, pid: int, channel: str, payload: str) -> None:
        parsed = self.parse(payload)
        if parsed is None:
            self._listener(self.everything)
            return
        origin, keys = parsed
        if origin != self.origin:
            self._listener(keys)

    async def _keep(self) -> None:
        while True:
            await self._watch()
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()
            backoff = 0.05
            while True:
                try:
                    await self._connect()
                    break
                except Exception as exc:
                    log.debug("flue: the Postgres change feed cannot listen yet (%s)", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            self.reconnects += 1
            log.info("flue: the Postgres change feed listens again; every reader looks again")
            self._listener(self.everything)

    async def _watch(self) -> None:
        """Return once the connection is lost or stops answering probes."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.heartbeat)
            if self._lost.is_set() or self._conn is None:
                return
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self.heartbeat)
            except Exception:
                return

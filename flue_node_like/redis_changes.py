"""The cross-process change feed of the Redis stores: "these ids changed", heard by every process.

Writers publish on one pub/sub channel per store and application (``<prefix>:ds:changes`` for
streams), from inside the Lua script that made the change — so a change is announced exactly when it
is applied, with no extra round trip, and even if the writing process dies right after. A message is
the JSON array ``[origin, [id, ...]]``: ``origin`` names the store instance that wrote, whose own
listener was told already, so its feed skips it.

Pub/sub delivers to whoever is subscribed at the moment of publishing and keeps nothing, so a feed
whose connection broke may have missed changes. It resubscribes (backing off to a second between
attempts while Redis is away) and, once subscribed again, calls the listener with
:data:`~flue_core.store.EVERYTHING`: every waiting reader reads again, and so sees whatever was
written while the feed was deaf. A connection that stays silent is probed with ``PING`` every
``heartbeat`` seconds and replaced when no answer comes within another ``heartbeat``, which catches a
peer gone without a word (a failover, a dropped network path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from flue_core.store import EVERYTHING
from flue_core.errors import StoreUnavailable
from flue_core.store import ChangeListener
from flue_node_like.redis_connection import RedisSettings, aioredis, redis_errors

log = logging.getLogger("flue.redis")

__all__ = ["ChangeFeed"]

#: Longest pause between two attempts to resubscribe.
MAX_BACKOFF = 1.0


class ChangeFeed:
    """Delivers the ids other processes publish on ``channel`` to a listener, on the event loop."""

    def __init__(self, client: aioredis.Redis, settings: RedisSettings, channel: str, *, heartbeat: float = 5.0) -> None:
        self.client = client
        self.settings = settings
        self.channel = channel
        self.heartbeat = heartbeat
        #: Written into this process's messages so that its own feed skips them.
        self.origin = uuid.uuid4().hex
        #: How many times the feed subscribed again after losing its connection.
        self.reconnects = 0
        self._listener: ChangeListener = lambda ids: None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self, listener: ChangeListener) -> None:
        """Subscribe — returning once Redis confirmed it, so nothing published afterwards is missed —
        and deliver messages to ``listener`` until :meth:`stop`. Raises
        :class:`~flue_core.errors.StoreUnavailable` when the subscription cannot be made."""
        self._listener = listener
        pubsub = await self._subscribe()
        self._task = asyncio.get_running_loop().create_task(self._run(pubsub), name=f"flue-changes:{self.channel}")

    async def stop(self) -> None:
        """Unsubscribe and stop delivering. Idempotent."""
        task, self._task = self._task, None
        self._stopped = True
        if task is None:
            return
        # asyncio.wait_for, which redis-py sends with, can swallow a cancellation (Python < 3.12): so
        # cancel again until the task ends, and the loops also look at _stopped.
        deadline = asyncio.get_running_loop().time() + self.settings.timeout
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.done():
            log.warning("flue: the change feed %s did not stop; leaving it behind", self.channel)

    async def _subscribe(self) -> Any:
        pubsub = self.client.pubsub()
        try:
            with redis_errors(self.settings, connecting=True):
                await pubsub.subscribe(self.channel)
                async with asyncio.timeout(self.settings.timeout):
                    while True:  # the confirmation: from here on, every message reaches us
                        message = await pubsub.get_message(timeout=self.settings.timeout)
                        if message is not None and message["type"] == "subscribe":
                            return pubsub
        except BaseException:  # no confirmation in time is a TimeoutError, so StoreUnavailable
            await _close(pubsub)
            raise

    async def _run(self, pubsub: Any) -> None:
        try:
            while True:
                try:
                    await self._listen(pubsub)
                except (StoreUnavailable, *_BROKEN) as exc:
                    log.warning("flue: the change feed %s lost Redis (%s); resubscribing", self.channel, exc)
                await _close(pubsub)
                pubsub = await self._resubscribe()
                if pubsub is None:
                    return
                self.reconnects += 1
                self._tell(EVERYTHING)  # readers look again: they may have missed changes meanwhile
        finally:
            if pubsub is not None:
                await _close(pubsub)

    async def _listen(self, pubsub: Any) -> None:
        """Deliver messages until the feed stops (returns) or the connection fails (raises)."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        probing = False
        while True:
            if self._stopped:
                raise asyncio.CancelledError
            with redis_errors(self.settings):
                message = await pubsub.get_message(timeout=self.heartbeat)
            now = loop.time()
            if message is not None:
                heard, probing = now, False
                if message["type"] == "message":
                    self._deliver(message["data"])
                continue
            if now - heard >= 2 * self.heartbeat and probing:
                raise TimeoutError(f"no answer to PING within {self.heartbeat} s")
            if not probing and now - heard >= self.heartbeat:
                with redis_errors(self.settings):
                    await pubsub.ping()
                probing = True

    async def _resubscribe(self) -> Any:
        """A new subscription, or ``None`` once the feed is stopped."""
        backoff = 0.05
        while not self._stopped:
            try:
                return await self._subscribe()
            except StoreUnavailable:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        return None

    def _deliver(self, data: bytes) -> None:
        try:
            origin, ids = json.loads(data)
        except (ValueError, TypeError):
            log.warning("flue: ignoring a malformed message on %s: %r", self.channel, data[:200])
            return
        if origin != self.origin:
            self._tell(ids)

    def _tell(self, ids: Any) -> None:
        try:
            self._listener(ids)
        except Exception:  # a listener's bug must not stop the feed for everyone else
            log.exception("flue: a change listener of %s failed", self.channel)


_BROKEN = (TimeoutError, OSError)


async def _close(pubsub: Any) -> None:
    """Release the subscription's connection; one stuck mid-command is dropped without waiting."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await pubsub.aclose()
            return
    connection = getattr(pubsub, "connection", None)
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)

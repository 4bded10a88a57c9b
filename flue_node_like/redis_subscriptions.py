"""Hearing other processes' changes through Redis pub/sub: the change feed of the Redis stores.

The run store's scripts publish, with every change, on ``<prefix>:ch:<key>`` for each key it touched —
a run id, or ``:ready``, ``:cancels``, ``:schedules`` (:data:`~flue_core.store.READY` ...). The
message is the writing store's origin, so a store skips its own (its listener heard of them already).
A process subscribes only to the keys it watches (:meth:`Subscriptions.want`, fed by
:meth:`~flue_core.store.RunStore.interest`): a web process following one run hears of that run
only, a worker of the ready pool and of cancels, and nobody hears of everything.

The stream store publishes every change on one channel instead (``<prefix>:ds:changes``), each
message the JSON ``[origin, [path, ...]]``: a feed made with ``feed=<key>`` subscribes to that one
channel before :meth:`Subscriptions.start` returns, and passes on the paths of each message.

Once Redis confirms a subscription, the key is passed to the listener: a reader that read before the
subscription existed looks again, so a change made in between is not missed. A key nobody watches
any more is unsubscribed after :data:`LINGER` seconds (a reader that comes back at once, as
long-polls do, finds it in place).

Pub/sub keeps nothing for a subscriber that is away, so when the connection breaks the feed connects
again (backing off to a second while Redis is away), subscribes to every wanted key, and then passes
:data:`~flue_core.store.EVERYTHING`: every reader, worker and scheduler looks again. A silent
connection is probed with ``PING`` every ``heartbeat`` seconds and replaced when no answer comes
within another ``heartbeat`` (a peer gone without a word: a failover, a dropped network path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import hiredis

from flue_core.errors import FlueError
from flue_core.store import EVERYTHING, ChangeListener
from flue_node_like.redis_connection import RedisSettings
from flue_node_like.redis_link import MAX_BACKOFF, Wire, open_wire

log = logging.getLogger("flue.redis")

__all__ = ["LINGER", "Subscriptions"]

#: Seconds a channel stays subscribed after its last watch ends.
LINGER = 2.0


class Subscriptions:
    """Subscriptions of one store to ``<base><key>`` channels; see the module docstring. With
    ``feed``, the one channel ``<base><feed>`` whose messages name what changed."""

    def __init__(
        self, settings: RedisSettings, base: str, origin: str, *, heartbeat: float = 5.0, feed: str | None = None
    ) -> None:
        self.settings = settings
        self.base = base
        self.origin = origin
        self.heartbeat = heartbeat
        self.feed = feed
        #: How many times the feed connected again after losing its connection.
        self.reconnects = 0
        self._listener: ChangeListener = lambda keys: None
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()  # sent SUBSCRIBE on the current connection
        self._dropping: dict[str, asyncio.TimerHandle] = {}
        self._wire: Wire | None = None
        self._heard = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._stopped = False

    async def start(self, listener: ChangeListener) -> None:
        """Connect (raising the link's typed errors; with ``feed``, once subscribed to it, so nothing
        published afterwards is missed) and deliver changes to ``listener`` until :meth:`stop`."""
        self._listener = listener
        self._stopped = False
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"flue-redis-subscriptions:{self.base}")

    async def stop(self) -> None:
        self._stopped = True
        for handle in self._dropping.values():
            handle.cancel()
        self._dropping.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._wire is not None:
            self._wire.abort()
            self._wire = None

    def want(self, key: str, wanted: bool) -> None:
        """Subscribe to ``key`` (at once) or unsubscribe (after :data:`LINGER` seconds)."""
        if self._stopped:
            return
        if wanted:
            handle = self._dropping.pop(key, None)
            if handle is not None:
                handle.cancel()
            self._wanted.add(key)
            if key not in self._subscribed and self._wire is not None:
                self._subscribed.add(key)
                self._wire.write(_pack("SUBSCRIBE", self.base + key))
        elif key in self._wanted and key not in self._dropping:
            self._dropping[key] = asyncio.get_running_loop().call_later(LINGER, self._drop, key)

    def _drop(self, key: str) -> None:
        self._dropping.pop(key, None)
        self._wanted.discard(key)
        if key in self._subscribed and self._wire is not None:
            self._subscribed.discard(key)
            self._wire.write(_pack("UNSUBSCRIBE", self.base + key))

    # -- the connection -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        subscribed = [("SUBSCRIBE", self.base + self.feed)] if self.feed is not None else []
        wire, _ = await open_wire(self.settings, "flue-subscriptions", self._on_reply, self._on_lost, subscribed)
        self._wire = wire
        self._lost = asyncio.Event()
        self._heard = asyncio.get_running_loop().time()
        self._subscribed = set(self._wanted)
        if self._subscribed:
            wire.write(_pack("SUBSCRIBE", *(self.base + key for key in self._subscribed)))

    def _on_reply(self, wire: Wire, reply: Any) -> None:
        if wire is not self._wire:
            return
        self._heard = asyncio.get_running_loop().time()
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind, key = reply[0], reply[1][len(self.base) :]
        if kind == "message" and key == self.feed:
            self._feed_message(reply[2])
        elif kind == "message":
            if reply[2] != self.origin:
                self._tell((key,))
        elif kind == "subscribe":  # in place: whoever read before it looks again
            self._tell((key,))

    def _feed_message(self, data: str) -> None:
        try:
            origin, keys = json.loads(data)
        except (ValueError, TypeError):
            log.warning("flue: ignoring a malformed message on %s%s: %r", self.base, self.feed, data[:200])
            return
        if origin != self.origin:
            self._tell(keys)

    def _on_lost(self, wire: Wire, exc: Exception | None) -> None:
        if wire is self._wire:
            self._wire = None
            self._lost.set()

    async def _keep(self) -> None:
        """Probe a silent connection; replace a lost one and tell everybody to look again."""
        loop = asyncio.get_running_loop()
        while not self._stopped:
            probed = False
            while self._wire is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.heartbeat):
                        await self._lost.wait()
                wire = self._wire
                if wire is None:
                    break
                silent = loop.time() - self._heard
                if probed and silent >= 2 * self.heartbeat:
                    log.warning("flue: Redis subscriptions at %s: no answer to PING; reconnecting", self.settings.url)
                    self._wire = None
                    wire.abort()
                    break
                if silent >= self.heartbeat:
                    wire.write(_pack("PING"))
                    probed = True
                else:
                    probed = False
            backoff = 0.02
            while not self._stopped:
                try:
                    await self._connect()
                except FlueError as exc:
                    log.debug("flue: Redis subscriptions at %s: %s", self.settings.url, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                self.reconnects += 1
                self._tell(EVERYTHING)  # whatever changed while the feed was deaf
                break

    def _tell(self, keys: Any) -> None:
        try:
            self._listener(keys)
        except Exception:  # a listener's bug must not stop the feed for everyone else
            log.exception("flue: a change listener of %s failed", self.base)


def _pack(*args: str) -> bytes:
    return hiredis.pack_command(args)

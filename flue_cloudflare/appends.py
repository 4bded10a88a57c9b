"""Events appended without waiting, sent in order: what ``RunStore.append`` and ``flush`` need when the
store is reached by calls (a run's object from a Worker, a Worker from a host)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from flue_core.store import NewEvent

log = logging.getLogger("flue.cloudflare")


class AppendQueue:
    """Queues each run's events and sends them with ``send(run_id, events)``, one batch at a time per
    run and in the order they were queued. :meth:`drain` waits until what was queued for a run
    before it is sent (call it before any other operation on the run, so that operation comes after
    the events); :meth:`flush` does so for every run."""

    def __init__(self, send: Callable[[str, list[NewEvent]], Awaitable[Any]]) -> None:
        self._send = send
        self._queued: dict[str, list[NewEvent]] = {}
        self._senders: dict[str, anyio.Lock] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def add(self, run_id: str, events: Sequence[NewEvent]) -> None:
        queue = self._queued.setdefault(run_id, [])
        if not queue:
            # No task group outlives a Worker's event, so the sender is a task of the loop itself.
            task = asyncio.ensure_future(self.drain(run_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.extend(events)

    def pending(self, run_id: str) -> bool:
        return run_id in self._queued or run_id in self._senders

    async def drain(self, run_id: str) -> None:
        lock = self._senders.setdefault(run_id, anyio.Lock())
        async with lock:  # fair: batches go in the order their senders queued
            events = self._queued.pop(run_id, None)
            if events:
                try:
                    await self._send(run_id, events)
                except Exception:
                    log.exception("flue: could not store %d event(s) of run %s", len(events), run_id)
        if not lock.locked() and run_id not in self._queued:
            self._senders.pop(run_id, None)

    async def flush(self) -> None:
        for run_id in {*self._queued, *self._senders}:
            await self.drain(run_id)

"""The local target's backlog: runs this worker owns that wait for one of its executor tasks, highest
``priority`` first and first come first within one priority; a run claimed at admission (already
``running``) goes before every other, then the runs taken from the ready pool or adopted (they hold a
slot of their workflow's limits while they wait here)."""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from flue_core.flow.limits import MAX_PRIORITY

Work = TypeVar("Work")

#: How many runs one executor task takes from the backlog in a row without yielding to the loop.
BACKLOG_BURST = 8
#: The place of a run claimed at admission: before any other.
CLAIMED = MAX_PRIORITY + 2
#: The place of a run taken from the ready pool or adopted: before any priority.
TAKEN = MAX_PRIORITY + 1


class Backlog(Generic[Work]):
    """A priority queue the executor tasks read from; one token in a memory stream per queued item,
    so readers wait on the stream (and end with it) as before, and take the first item when woken."""

    __slots__ = ("_heap", "_receive", "_send", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Work]] = []
        self._seq = itertools.count()
        self._send, self._receive = anyio.create_memory_object_stream[None](math.inf)

    def put(self, priority: int, work: Work) -> None:
        heapq.heappush(self._heap, (-priority, next(self._seq), work))
        self._send.send_nowait(None)

    def close(self) -> None:
        """No more items: readers end (``EndOfStream``) once the queued ones are taken."""
        self._send.close()

    def reader(self) -> Reader[Work]:
        return Reader(self._heap, self._receive.clone())

    def close_readers(self) -> None:
        self._receive.close()


class Reader(Generic[Work]):
    """One executor task's end of the backlog. Waits only when the backlog is empty: a queued run is
    taken at once instead of after a turn of a busy event loop (``receive()`` yields first, and under
    load a turn is every other task's step), so execution keeps pace with admission. At most
    :data:`BACKLOG_BURST` in a row, since a run that never waits would otherwise hold the loop."""

    __slots__ = ("_heap", "_receive", "_streak")

    def __init__(self, heap: list[tuple[int, int, Work]], receive: MemoryObjectReceiveStream[None]) -> None:
        self._heap, self._receive = heap, receive
        self._streak = BACKLOG_BURST  # the first run is waited for as usual

    async def receive(self) -> Work:
        if self._streak < BACKLOG_BURST:
            try:
                self._receive.receive_nowait()
            except anyio.WouldBlock:
                pass
            else:
                self._streak += 1
                return heapq.heappop(self._heap)[2]
        self._streak = 0
        await self._receive.receive()
        return heapq.heappop(self._heap)[2]

    async def __aenter__(self) -> Reader[Work]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._receive.close()

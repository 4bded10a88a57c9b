"""The local target's backlog: runs this worker owns that wait for one of its executor tasks, highest
``priority`` first and first come first within one priority; a run claimed at admission (already
``running``) goes before every other, then the runs taken from the ready pool or adopted (they hold a
slot of their workflow's limits while they wait here)."""

from __future__ import annotations

import bisect
import math
from collections import deque
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
    """A priority queue the executor tasks read from: a FIFO queue per priority in use (most runs
    share one, so a put and a take cost a deque's append and pop), and one token in a memory stream
    per queued item, so readers wait on the stream (and end with it) and take the first item when
    woken."""

    __slots__ = ("_queues", "_receive", "_send")

    def __init__(self) -> None:
        self._queues = _Queues[Work]()
        self._send, self._receive = anyio.create_memory_object_stream[None](math.inf)

    def put(self, priority: int, work: Work) -> None:
        self._queues.put(priority, work)
        self._send.send_nowait(None)

    def close(self) -> None:
        """No more items: readers end (``EndOfStream``) once the queued ones are taken."""
        self._send.close()

    def reader(self) -> Reader[Work]:
        return Reader(self._queues, self._receive.clone())

    def close_readers(self) -> None:
        self._receive.close()


class _Queues(Generic[Work]):
    """FIFO queues by priority; ``take`` serves the highest priority first."""

    __slots__ = ("_by_priority", "_levels")

    def __init__(self) -> None:
        self._by_priority: dict[int, deque[Work]] = {}
        self._levels: list[int] = []  # the priorities with a queue, ascending

    def put(self, priority: int, work: Work) -> None:
        queue = self._by_priority.get(priority)
        if queue is None:
            queue = self._by_priority[priority] = deque()
            bisect.insort(self._levels, priority)
        queue.append(work)

    def take(self) -> Work:
        priority = self._levels[-1]
        queue = self._by_priority[priority]
        work = queue.popleft()
        if not queue:
            del self._by_priority[priority]
            self._levels.pop()
        return work


class Reader(Generic[Work]):
    """One executor task's end of the backlog. Waits only when the backlog is empty: a queued run is
    taken at once instead of after a turn of a busy event loop (``receive()`` yields first, and under
    load a turn is every other task's step), so execution keeps pace with admission. At most
    :data:`BACKLOG_BURST` in a row, since a run that never waits would otherwise hold the loop."""

    __slots__ = ("_queues", "_receive", "_streak")

    def __init__(self, queues: _Queues[Work], receive: MemoryObjectReceiveStream[None]) -> None:
        self._queues, self._receive = queues, receive
        self._streak = BACKLOG_BURST  # the first run is waited for as usual

    async def receive(self) -> Work:
        if self._streak < BACKLOG_BURST:
            try:
                self._receive.receive_nowait()
            except anyio.WouldBlock:
                pass
            else:
                self._streak += 1
                return self._queues.take()
        self._streak = 0
        await self._receive.receive()
        return self._queues.take()

    async def __aenter__(self) -> Reader[Work]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._receive.close()

"""Waking readers inside a Worker: watches that poll a change counter, and waits held in a run's object.

Two rules of Python in Workers shape this module:

* **A task must not be resumed by another event's code.** A reader waiting on an event that another
  request (or an alarm) sets would continue on behalf of that request: its next timer belongs to
  that request, and once that request has ended the reader's storage calls fail ("Cannot perform I/O
  on behalf of a different request"). So :class:`PollingChanges` only counts changes, and a watch
  checks the count on timers of its own (:func:`polled`): every 5 ms for half a second, then backing
  off to every 50 ms while nothing changes — readers in the object where the changes happen wake
  within that interval. (Looking every millisecond was tried: the wake-ups took the isolate's one
  thread from the execution the reader waits for, and events reached SSE readers 3x later.)
* **A run changes only in its own Durable Object**, which may be in another isolate (another machine,
  in production) than a Worker serving ``runs.wait``, ``runs.events(follow=True)`` or
  ``?wait=result``. There a watch asks the run's object to answer once the run changed after the
  latest change this isolate has seen (:meth:`ObjectStore.wait_change`): one call held open in the
  object instead of polling from afar.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio

from flue_core.changes import Changes
from flue_core.store import ANY_RUN

if TYPE_CHECKING:
    from flue_cloudflare.store import ObjectStore

#: Seconds between two looks of a waiting reader at its change counter: at first, and at the longest
#: (reached by doubling once a wait has lasted POLL_BRISK seconds).
POLL_FIRST, POLL_MOST, POLL_BRISK = 0.005, 0.05, 0.5
#: Keys whose counters are kept; older ones are forgotten (a watch of one then wakes once for nothing).
KEPT = 10_000


async def polled(changed: Callable[[], bool], timeout: float) -> bool:
    """``True`` once ``changed()`` is, looked at on timers of this task's own (see the module
    docstring); ``False`` after ``timeout`` seconds."""
    began = anyio.current_time()
    interval = POLL_FIRST
    while not changed():
        now = anyio.current_time()
        remaining = began + timeout - now
        if remaining <= 0:
            return False
        await anyio.sleep(min(interval, remaining))
        if now - began >= POLL_BRISK:
            interval = min(interval * 2, POLL_MOST)
    return True


_for_results: contextvars.ContextVar[bool] = contextvars.ContextVar("flue_cloudflare_for_results", default=False)


@contextmanager
def waiting_for_results() -> Iterator[None]:
    """Inside, this task's waits on runs are waits for their end (a ``?wait=result`` request): the
    run's object executes a run still in line in the waiting call, without waiting for its alarm
    (:meth:`ObjectStore.wait_change`). Not for followers of events, who must hear of each one."""
    token = _for_results.set(True)
    try:
        yield
    finally:
        _for_results.reset(token)


def for_results() -> bool:
    """Whether this task's waits on runs are waits for their end (:func:`waiting_for_results`)."""
    return _for_results.get()


class PollingLock:
    """A lock whose waiters poll (see the module docstring): ``async with lock:``. A waiter on an
    ``asyncio.Lock`` would be resumed by the releasing event's code, and go on on its behalf."""

    def __init__(self) -> None:
        self._held = False

    async def __aenter__(self) -> None:
        await polled(lambda: not self._held, math.inf)
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False


class PollingChanges(Changes):
    """A change feed whose watches poll a counter per key instead of being woken by the notifier."""

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, int] = {}
        self._everything = 0

    def notify(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key == ANY_RUN:
                self._everything += 1
                continue
            self._counts[key] = self._counts.pop(key, 0) + 1
            if len(self._counts) > KEPT:
                del self._counts[next(iter(self._counts))]

    def count(self, key: str) -> tuple[int, int]:
        return self._everything, self._counts.get(key, 0)

    @contextmanager
    def watch(self, key: str) -> Iterator[PolledWatch]:  # type: ignore[override]
        yield PolledWatch(self, key)


class PolledWatch:
    """A :class:`~flue_core.changes.Watch` that looks at its key's change counter (:func:`polled`)."""

    def __init__(self, changes: PollingChanges, key: str) -> None:
        self._changes = changes
        self._key = key
        self._seen = changes.count(key)

    def changed(self) -> bool:
        """Whether the key changed since the last wait (or the watch was made); resets it."""
        now = self._changes.count(self._key)
        if now == self._seen:
            return False
        self._seen = now
        return True

    async def wait(self, timeout: float) -> bool:
        return await polled(self.changed, timeout)


class ObjectChanges(PollingChanges):
    """The runtime's change feed in a Worker: a watch of a run served by another object waits there."""

    def __init__(self, store: ObjectStore) -> None:
        super().__init__()
        self._store = store

    @contextmanager
    def watch(self, key: str) -> Iterator[PolledWatch | _RunWatch]:  # type: ignore[override]
        polled = PolledWatch(self, key)
        if key.startswith(":") or self._store.serving_run(key) is not None:
            yield polled  # every change of the run is made right here, in its object
        else:
            yield _RunWatch(polled, self._store, key)


class _RunWatch:
    """A watch of one run that waits in the run's object."""

    def __init__(self, local: PolledWatch, store: ObjectStore, run_id: str) -> None:
        self._local = local
        self._store = store
        self._run_id = run_id

    async def wait(self, timeout: float) -> bool:
        if self._local.changed():  # this isolate already heard of a change
            return True
        if await self._store.wait_change(self._run_id, timeout):
            self._local.changed()  # the notification wait_change gave
            return True
        return False

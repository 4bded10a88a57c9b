"""The executor's side of one execution of a run: its events, its store operations and its end.

An execution ends by returning, raising, being cancelled, or by *suspending*: the run is parked in
the store (:meth:`RunStore.suspend`) and the workflow function is unwound with :class:`Suspend`, so no
task or slot holds the run while it waits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel

from flue_core.errors import StoreUnavailable
from flue_core.models import Event, RunRecord, WaitingFor, utc_now
from flue_core.plugins import has_implementations
from flue_core.store import NewEvent, Suspension, event_json

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

T = TypeVar("T")


class Suspend(BaseException):
    """Unwinds a workflow function whose run was parked in the store; the executor catches it.

    A ``BaseException`` (like ``asyncio.CancelledError``) so that ``except Exception`` in workflow
    code does not swallow it. Nothing after the suspending call runs in this execution: the run
    resumes later by executing the function again, with everything durable replayed.
    """


class Lost(BaseException):
    """Unwinds a workflow function whose run is no longer held by this worker (adopted elsewhere
    after this worker was judged dead): nothing more may be written for it from here."""


class AttemptControl:
    """Events and store operations of one execution of one run.

    Events get consecutive indexes from ``next_index`` (where the stream stood when the run was
    claimed) and go to the store without waiting. A store operation that writes at the stream's end
    (:meth:`exclusive`) holds back the events written meanwhile and renumbers them after it. After
    :meth:`close` (the execution is over) events are dropped, so nothing lands after ``run_end``.
    """

    def __init__(self, runtime: Runtime, record: RunRecord, owner: str, next_index: int, *, resumed: bool) -> None:
        self.run_id = record.run_id
        self.record = record
        self.owner = owner
        self.resumed = resumed
        self.cancel_requested = record.cancel_requested
        self.suspended = False
        self.lost = False
        #: A store operation failed for good: the execution ends as interrupted, not as failed.
        self.store_lost = False
        self.cancel: Callable[[], None] = lambda: None  # set by the executor: cancels the execution
        self._runtime = runtime
        self._store = runtime.target.store
        self._next_index = next_index
        self._held: list[tuple[str, dict[str, Any]]] | None = None
        self._lock: anyio.Lock | None = None  # made on first use: most executions never need it
        self._open = True

    @property
    def open(self) -> bool:
        return self._open

    def write(self, type: str, data: dict[str, Any]) -> None:
        if not self._open:
            log.warning("flue: run %s is not executing here any more; dropped its %r event", self.run_id, type)
            return
        if self._held is not None:
            self._held.append((type, data))
            return
        event = NewEvent(self._next_index, type, data, utc_now())
        self._next_index += 1
        self._store.append(self.run_id, (event,))
        hook = self._runtime.pm.hook.flue_event_emitted
        if has_implementations(hook):
            self._runtime.notify_soon(hook, event=Event.model_validate_json(event_json(self.run_id, event)))

    async def exclusive(self, operation: Callable[[], Awaitable[T]], next_index: Callable[[T], int | None]) -> T:
        """Run a store operation that writes at the end of the run's stream.

        Events written by other tasks of the workflow meanwhile are held back, then written after
        what the operation stored, from the index ``next_index(result)`` gives (``None``: the run
        was lost, and they are dropped).
        """
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            self._held = []
            try:
                with anyio.CancelScope(shield=True):  # the store's state and ours must not part ways
                    result = await operation()
            except BaseException as exc:
                if isinstance(exc, StoreUnavailable):
                    # Whether it was applied is unknown: only a replay from what is stored can tell.
                    self.store_lost = True
                held, self._held = self._held, None
                for type, data in held:
                    self.write(type, data)
                raise
            index = next_index(result)
            held, self._held = self._held, None
            if index is None:
                self.lose()
            else:
                self._next_index = index
            for type, data in held:
                self.write(type, data)
            return result

    async def patiently(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent store operation (saving a step, a read), waiting out a store outage for
        up to the target's ``store_patience`` seconds with back-off; past it the execution is given
        up as interrupted (:attr:`store_lost`) and resumed by replay once the store answers."""
        deadline = anyio.current_time() + self._runtime.target.store_patience
        delay = 0.05
        while True:
            try:
                return await operation()
            except StoreUnavailable as exc:
                if anyio.current_time() + delay > deadline:
                    self.store_lost = True
                    raise
                if delay == 0.05:
                    log.warning("flue: run %s waits for the store to answer again (%s)", self.run_id, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def suspend(self, waiting_for: WaitingFor, wake_at: datetime | None) -> bool:
        """Park the run until ``wake_at`` or until what it waits for arrives.

        Raises :class:`Suspend` once it is parked. Returns ``False`` when the store kept it running
        because what it waits for is already there; raises :class:`Lost` when the run is no longer
        held by this worker. A cancel request found here cancels the execution.
        """
        suspension = Suspension(waiting_for, wake_at)
        result = await self.exclusive(
            lambda: self._store.suspend(self.run_id, self.owner, suspension),
            lambda answer: None if answer is None else answer.next_index,
        )
        if result is None:
            raise Lost()
        self.record = result.record
        if result.suspended:
            self.suspended = True
            self.close()
            raise Suspend()
        if result.record.cancel_requested:
            self.cancel_requested = True
            self.cancel()
            await anyio.lowlevel.checkpoint()  # the cancellation is delivered here
        return False

    def lose(self) -> None:
        self.lost = True
        self.close()

    def close(self) -> None:
        self._open = False


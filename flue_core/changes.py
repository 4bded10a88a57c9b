"""Waking readers when a run's stream or record changes, without polling."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import anyio

from flue_core.store import ANY_RUN


class Watch:
    """A reader's registration for one run. Created before reading, so no change slips between the
    read and the wait: a change that arrives in between makes the next :meth:`wait` return at once."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def _set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """``True`` when a change was signalled, ``False`` after ``timeout`` seconds without one."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        changed = self._event.is_set()
        if changed:
            self._event = anyio.Event()
        return changed


class Changes:
    """The runtime's change feed: stores call :meth:`notify` after a durable change."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self._interest: Callable[[str, bool], None] | None = None

    def attach(self, interest: Callable[[str, bool], None] | None) -> None:
        """Tell ``interest(key, True)`` when a key gets its first watch and ``interest(key, False)``
        when it loses its last (see :meth:`~flue_core.store.RunStore.interest`); keys watched
        already are told at once. ``None`` detaches."""
        self._interest = interest
        if interest is not None:
            for key in list(self._watches):
                interest(key, True)

    def notify(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            if run_id == ANY_RUN:
                for watches in self._watches.values():
                    for watch in watches:
                        watch._set()
                continue
            for watch in self._watches.get(run_id, ()):
                watch._set()

    @contextmanager
    def watch(self, run_id: str) -> Iterator[Watch]:
        watch = Watch()
        watches = self._watches.get(run_id)
        if watches is None:
            watches = self._watches[run_id] = set()
            if self._interest is not None:
                self._interest(run_id, True)
        watches.add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(run_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[run_id]
                    if self._interest is not None:
                        self._interest(run_id, False)

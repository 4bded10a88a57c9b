"""Waking readers when a run's stream or record changes, without polling."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import anyio


class _Everything(tuple[str, ...]):
    __slots__ = ()

    def __repr__(self) -> str:
        return "EVERYTHING"


EVERYTHING: tuple[str, ...] = _Everything()
"""What a store passes to its change listener instead of ids when it may have missed changes (its
feed of other processes' writes was cut off and is back): every waiting reader should read again. It
iterates as no ids, so a listener that does not know it loses nothing but the early wake-up."""


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

    def notify(self, run_ids: Iterable[str]) -> None:
        if run_ids is EVERYTHING:
            for watches in self._watches.values():
                for watch in watches:
                    watch._set()
            return
        for run_id in run_ids:
            for watch in self._watches.get(run_id, ()):
                watch._set()

    @contextmanager
    def watch(self, run_id: str) -> Iterator[Watch]:
        watch = Watch()
        self._watches.setdefault(run_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(run_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[run_id]

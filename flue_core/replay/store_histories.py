"""Run histories read from any :class:`~flue_core.store.RunStore` through its read operations only.

A store's plugin decides how to open it for reading without writing (``flue_history_reader``); this
reader then only ever calls ``get``, ``list``, ``load_steps`` and ``read``: :class:`ReadOnly` holds
nothing else, so no write can reach the store from a replay check, whatever its code does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from flue_core.arguments import is_run_id
from flue_core.models import UNFINISHED, RunRecord
from flue_core.replay.history import HistoryReader, PendingSignal, RunHistory, Selection, child_ids
from flue_core.store import EventPage, RunQuery

if TYPE_CHECKING:
    from flue_core.store import RunStore

PAGE = 1000


class ReadOnly:
    """The read operations of a run store, and nothing else."""

    __slots__ = ("get", "list", "load_steps", "read")

    def __init__(self, store: RunStore) -> None:
        self.get = store.get
        self.list = store.list
        self.load_steps = store.load_steps
        self.read: Callable[[str, int | None, int], Awaitable[EventPage | None]] = store.read


class StoreHistories(HistoryReader):
    """Histories from a run store: one the caller opened (and closes), or one :meth:`opening` opens
    at the first read and closes with the reader."""

    def __init__(self, store: RunStore, *, source: str = "") -> None:
        self._reads: ReadOnly | None = ReadOnly(store)
        self._open: Callable[[], Awaitable[RunStore]] | None = None
        self._opened: RunStore | None = None
        self.source = source or str(getattr(store, "url", type(store).__name__))

    @classmethod
    def opening(cls, open_store: Callable[[], Awaitable[RunStore]], source: str) -> StoreHistories:
        """A reader that opens its store with ``open_store()`` (which must write nothing) when reading begins."""
        reader = cls.__new__(cls)
        reader._reads, reader._open, reader._opened, reader.source = None, open_store, None, source
        return reader

    async def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.close()

    async def histories(self, selection: Selection) -> AsyncIterator[RunHistory]:
        if self._reads is None:
            assert self._open is not None
            self._opened = await self._open()
            self._reads = ReadOnly(self._opened)
        reads = self._reads
        if selection.run_ids is not None:
            for run_id in selection.run_ids:
                record = await reads.get(run_id) if is_run_id(run_id) else None
                if record is not None and selection.keeps(record):
                    yield await self._history(record)
            return
        for status in UNFINISHED if selection.unfinished else (None,):
            after = None
            while True:
                page = await reads.list(RunQuery(status=status, limit=PAGE, after=after))
                for record in page:
                    if selection.keeps(record):
                        yield await self._history(record)
                if len(page) < PAGE:
                    break
                after = (page[-1].created_at, page[-1].run_id)

    async def _history(self, record: RunRecord) -> RunHistory:
        reads = self._reads
        assert reads is not None
        calls = tuple((await reads.load_steps(record.run_id)).items())
        signals = await self._mailbox(record.run_id) if record.status in UNFINISHED else ()
        children = {}
        for child_id in child_ids(calls):
            child = await reads.get(child_id)
            if child is not None:
                children[child_id] = child
        return RunHistory(record, calls, signals, children)

    async def _mailbox(self, run_id: str) -> tuple[PendingSignal, ...]:
        """The signals announced in the run's stream and not delivered yet."""
        received: dict[str, PendingSignal] = {}
        delivered: set[str] = set()
        after = -1
        assert self._reads is not None
        while True:
            page = await self._reads.read(run_id, after, PAGE)
            if page is None or not page.events:
                break
            for stored in page.events:
                event = stored.parse()
                if event.type == "signal_received":
                    data = event.data
                    received[data["signalId"]] = PendingSignal(data["signalId"], data["name"], data.get("data"))
                elif event.type == "signal_delivered":
                    delivered.add(event.data["signalId"])
            after = page.events[-1].index
        return tuple(signal for signal_id, signal in received.items() if signal_id not in delivered)

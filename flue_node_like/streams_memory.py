"""General Durable Streams in memory: for tests and single-process servers whose streams may vanish
with the process. Every operation runs at once on the event loop, so each is atomic."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar, TypeVar

from flue_core.errors import StoreUnavailable
from flue_core.store import Capabilities, ChangeListener
from flue_core.streams.engine import StreamRow, StreamTx, TransactionalStreamStore

T = TypeVar("T")


@dataclass(slots=True)
class _Stream:
    row: StreamRow
    records: list[bytes] = field(default_factory=list)  # the stream's own, from position fork_at + 1
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)


class MemoryStreamStore(TransactionalStreamStore):
    """Streams in this process's memory."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=False, shared=False)

    def __init__(self, url: str = "memory://", *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.url = url
        self._streams: dict[int, _Stream] = {}
        self._paths: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._open = False

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def _transact(self, work: Callable[[StreamTx], T], *, write: bool = True) -> tuple[T, set[str]]:
        if not self._open:
            raise StoreUnavailable("The memory stream store is closed.")
        tx = _MemoryTx(self)
        return work(tx), tx.changed


class _MemoryTx:
    def __init__(self, store: MemoryStreamStore) -> None:
        self.store = store
        self.changed: set[str] = set()

    def find(self, path: str) -> StreamRow | None:
        stream_id = self.store._paths.get(path)
        return None if stream_id is None else self.load(stream_id)

    def load(self, stream_id: int) -> StreamRow:
        return replace(self.store._streams[stream_id].row)

    def insert(self, row: StreamRow) -> None:
        row.id = next(self.store._ids)
        self.store._streams[row.id] = _Stream(replace(row))
        self.store._paths[row.path] = row.id

    def save(self, row: StreamRow) -> None:
        self.store._streams[row.id].row = replace(row)

    def drop(self, stream_id: int) -> None:
        stream = self.store._streams.pop(stream_id)
        if self.store._paths.get(stream.row.path) == stream_id:
            del self.store._paths[stream.row.path]

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        stream = self.store._streams[stream_id]
        base = stream.row.fork_at + 1  # position of records[0]
        start = max(after + 1, base)
        for position in range(start, min(upto, base + len(stream.records) - 1) + 1):
            yield position, stream.records[position - base]

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        stream = self.store._streams[stream_id]
        assert first == stream.row.fork_at + 1 + len(stream.records), "records are appended in order"
        stream.records.extend(records)

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        return self.store._streams[stream_id].producers.get(producer_id)

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.store._streams[stream_id].producers[producer_id] = (epoch, seq)

    def expiry_candidates(self, now: float) -> list[str]:
        return [s.row.path for s in self.store._streams.values() if not s.row.deleted and s.row.expired(now)]

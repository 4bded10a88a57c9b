"""The base of stream backends that have synchronous transactions (memory, SQLite, a Durable Object's
storage...): :class:`TransactionalStreamStore` is a whole :class:`~flue_core.streams.store.StreamStore`
made of :mod:`flue_core.streams.rules` and one method a backend implements, ``_transact``: run a
function against a :class:`~flue_core.streams.rows.StreamTx` atomically, isolated from other operations.

Operations that usually only read — ``head``, ``read`` and ``purge_expired`` — first run as reads
(``write=False``: no write lock, so they do not compete with writers sharing the database), and run
again as writes only when they find something to write: an expired stream to remove, a TTL to renew.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import TypeVar

from flue_core.store import ChangeListener
from flue_core.streams import rules
from flue_core.streams.rows import StreamRow, StreamTx
from flue_core.streams.store import Append, Appended, Created, NewStream, StreamMeta, StreamPage, StreamStore

__all__ = ["StreamRow", "StreamTx", "TransactionalStreamStore"]

T = TypeVar("T")


class TransactionalStreamStore(StreamStore):
    """A :class:`StreamStore` made of :mod:`flue_core.streams.rules` and a backend's ``_transact``."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._on_change: ChangeListener = lambda paths: None

    @abstractmethod
    async def _transact(self, work: Callable[[StreamTx], T], *, write: bool = True) -> tuple[T, set[str]]:
        """Run ``work`` in one transaction; return its result and the paths it changed. If ``work``
        raises, nothing it did is kept and the exception propagates. ``write=False``: ``work`` only
        reads, so the backend may run it without taking a write lock, as long as every read of the
        transaction sees the same committed state."""

    async def _apply(self, work: Callable[[StreamTx, float], T]) -> T:
        now = self._clock()
        result, changed = await self._transact(lambda tx: work(tx, now))
        if changed:
            self._on_change(changed)
        return result

    async def _read_first(self, work: Callable[[StreamTx, float], T]) -> T:
        """``work`` as a read; if it turns out to write, all over again as a write (:meth:`_apply`)."""
        now = self._clock()
        try:
            result, _ = await self._transact(lambda tx: work(_ReadOnlyTx(tx), now), write=False)
        except _WriteNeeded:
            return await self._apply(work)
        return result

    async def create(self, path: str, stream: NewStream) -> Created:
        return await self._apply(lambda tx, now: rules.create(tx, path, stream, now))

    async def append(self, path: str, append: Append) -> Appended:
        return await self._apply(lambda tx, now: rules.append_to(tx, path, append, now))

    async def delete(self, path: str) -> None:
        await self._apply(lambda tx, now: rules.delete(tx, path, now))

    async def head(self, path: str) -> StreamMeta:
        return await self._read_first(lambda tx, now: rules.live(tx, path, now).meta())

    async def read(self, path: str, after: int | None, limit: int, max_bytes: int) -> StreamPage:
        return await self._read_first(lambda tx, now: rules.read(tx, path, after, limit, max_bytes, now))

    async def purge_expired(self) -> int:
        return await self._read_first(rules.purge)


class _WriteNeeded(Exception):
    """A read-only attempt reached a write: the operation is run again as a write."""


class _ReadOnlyTx:
    """A :class:`StreamTx` that reads through ``tx`` and stops at the first write, before it is made."""

    def __init__(self, tx: StreamTx) -> None:
        self._tx = tx
        self.changed: set[str] = set()

    def find(self, path: str) -> StreamRow | None:
        return self._tx.find(path)

    def load(self, stream_id: int) -> StreamRow:
        return self._tx.load(stream_id)

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        return self._tx.records(stream_id, after, upto)

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        return self._tx.producer(stream_id, producer_id)

    def expiry_candidates(self, now: float) -> list[str]:
        return self._tx.expiry_candidates(now)

    def insert(self, row: StreamRow) -> None:
        raise _WriteNeeded

    def save(self, row: StreamRow) -> None:
        raise _WriteNeeded

    def drop(self, stream_id: int) -> None:
        raise _WriteNeeded

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        raise _WriteNeeded

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        raise _WriteNeeded

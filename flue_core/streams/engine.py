"""The base of stream backends that have synchronous transactions (memory, SQLite, a Durable Object's
storage...): :class:`TransactionalStreamStore` is a whole :class:`~flue_core.streams.store.StreamStore`
made of :mod:`flue_core.streams.rules` and one method a backend implements, ``_transact``: run a
function against a :class:`~flue_core.streams.rows.StreamTx` atomically, isolated from other operations.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
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
    async def _transact(self, work: Callable[[StreamTx], T]) -> tuple[T, set[str]]:
        """Run ``work`` in one transaction; return its result and the paths it changed. If ``work``
        raises, nothing it did is kept and the exception propagates."""

    async def _apply(self, work: Callable[[StreamTx, float], T]) -> T:
        now = self._clock()
        result, changed = await self._transact(lambda tx: work(tx, now))
        if changed:
            self._on_change(changed)
        return result

    async def create(self, path: str, stream: NewStream) -> Created:
        return await self._apply(lambda tx, now: rules.create(tx, path, stream, now))

    async def append(self, path: str, append: Append) -> Appended:
        return await self._apply(lambda tx, now: rules.append_to(tx, path, append, now))

    async def delete(self, path: str) -> None:
        await self._apply(lambda tx, now: rules.delete(tx, path, now))

    async def head(self, path: str) -> StreamMeta:
        return await self._apply(lambda tx, now: rules.live(tx, path, now).meta())

    async def read(self, path: str, after: int | None, limit: int, max_bytes: int) -> StreamPage:
        return await self._apply(lambda tx, now: rules.read(tx, path, after, limit, max_bytes, now))

    async def purge_expired(self) -> int:
        return await self._apply(rules.purge)

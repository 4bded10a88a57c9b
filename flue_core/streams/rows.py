"""What a transactional stream backend stores, and the transaction it offers the rules.

:class:`StreamRow` is a stream as stored; :class:`StreamTx` is one transaction of a backend (memory,
SQLite, a Durable Object's storage...), the only thing :mod:`flue_core.streams.rules` needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from flue_core.streams.store import StreamMeta


@dataclass(slots=True)
class StreamRow:
    """A stream as stored. ``fork_of``/``fork_at``: the source stream's id and the position up to which
    records come from it (0 for a stream of its own). ``forks``: how many streams fork from this one.
    ``deleted``: soft-deleted (kept for its forks). ``spec``: what its creation asked for, which an
    idempotent re-creation is compared with."""

    id: int
    path: str
    content_type: str
    tail: int
    touched_at: float
    ttl: int | None = None
    expires_at: float | None = None
    closed: bool = False
    closed_by: tuple[str, int, int] | None = None
    stream_seq: str | None = None
    fork_of: int | None = None
    fork_at: int = 0
    forks: int = 0
    deleted: bool = False
    spec: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> StreamMeta:
        return StreamMeta(self.path, self.id, self.content_type, self.tail, self.closed, self.ttl, self.expires_at)

    def expired(self, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return True
        return self.ttl is not None and now >= self.touched_at + self.ttl


class StreamTx(Protocol):
    """One transaction of a backend. Rows handed out are copies: changes count once :meth:`save`-d.
    ``changed`` collects the paths to notify once the transaction commits."""

    changed: set[str]

    def find(self, path: str) -> StreamRow | None:
        """The stream at ``path`` (soft-deleted ones included)."""

    def load(self, stream_id: int) -> StreamRow:
        """The stream with this id, which exists (a fork's source is kept while the fork is)."""

    def insert(self, row: StreamRow) -> None:
        """Store a new stream and set ``row.id`` to an id never used before."""

    def save(self, row: StreamRow) -> None:
        """Store the row's changed fields."""

    def drop(self, stream_id: int) -> None:
        """Remove the stream, its records and its producers."""

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        """The stream's own records at positions ``after < position <= upto``, in order, lazily."""

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        """Store ``records`` at positions ``first``, ``first + 1``..."""

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        """The producer's ``(epoch, last accepted seq)`` on this stream, or ``None``."""

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None: ...

    def expiry_candidates(self, now: float) -> list[str]:
        """Paths of streams not soft-deleted whose TTL or expiry has passed at ``now``."""

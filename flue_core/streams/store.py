"""The storage contract of general Durable Streams: :class:`StreamStore`.

A backend is one subclass. Each operation is coarse — one transaction, one script, one Durable Object
call — and the rules below are the protocol's (``references/durable-streams-PROTOCOL.md``). Backends
with synchronous transactions (SQLite, memory) get them all from
:class:`~flue_core.streams.engine.TransactionalStreamStore`, which keeps them in one place.

**Positions.** A stream is a sequence of *records*, one per append (for JSON streams a record holds
the one or more messages of that append). The record appended n-th sits at position n, from 1;
position 0 is the start of an empty stream. A read *after* position p returns the records at p+1,
p+2... A stream's ``tail`` is the position of its last record.

Rules every implementation keeps:

* **Paths and incarnations.** A stream lives at a path. Deleting it frees the path (unless forks still
  read it, below); a stream created again at that path is a new stream: new ``stream_id``, nothing of
  the old one visible.
* **Idempotent creation.** Creating at a path that holds a stream returns it (``created=False``) when
  the request's configuration matches — content type (media type, case-insensitive), TTL or expiry,
  closure, fork source, fork offset (when the request names one) and sub-offset — and raises
  :class:`~flue_core.errors.StreamConflict` otherwise.
* **JSON mode.** For ``application/json`` streams, appended data must be JSON (else
  :class:`~flue_core.errors.InvalidStreamRequest`); a top-level array is flattened one level into
  its elements (an empty array is refused on append, and creates nothing on creation).
* **Closure.** Closing is monotonic and atomic with a final append. After it, an append raises
  :class:`~flue_core.errors.StreamClosed` — except a repeat of the producer request that closed the
  stream (a duplicate) and a close-only request without a producer (idempotent).
* **Writers.** ``Stream-Seq`` values must grow byte-wise (:class:`~flue_core.errors.StreamSeqConflict`).
  Idempotent producers follow §5.2.1: an unknown producer starts at seq 0; an older epoch raises
  :class:`~flue_core.errors.StaleProducerEpoch`; a newer epoch must start at seq 0; a seq already
  accepted in the epoch is a duplicate (nothing written, ``duplicate=True``); a gap raises
  :class:`~flue_core.errors.ProducerSequenceGap`. Producer checks come before ``Stream-Seq`` checks,
  and producer state, ``Stream-Seq`` and data are written together or not at all.
* **Forks.** A fork inherits its source's records up to the fork offset (plus, with a sub-offset, a
  prefix of the next record — bytes, or JSON messages — materialised as the fork's first own record),
  then has its own. Source appends after the fork are invisible to it; producer state is not
  inherited. A stream with forks that is deleted or expires becomes *soft-deleted*: its path answers
  :class:`~flue_core.errors.StreamGone` and cannot be created again, its data stays for the forks, and
  it is removed once its last fork is (cascading up a chain of forks).
* **Expiry.** ``ttl`` is a sliding window renewed by every read and write (``head`` does not renew
  it); ``expires_at`` is absolute. An expired stream is gone (or soft-deleted, with forks).
* **Change notification.** After a change is durable, the store calls the listener given to
  :meth:`StreamStore.open` with the paths whose records, closure or existence changed, so waiting
  readers wake. A fork's readers are woken by the fork's own changes only. A store that hears of
  other processes' changes and may have missed some (its feed was cut off) calls it with
  :data:`~flue_core.store.EVERYTHING` once it hears again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from flue_core.store import Capabilities, ChangeListener

__all__ = [
    "Append",
    "Appended",
    "Created",
    "Fork",
    "NewStream",
    "Producer",
    "StreamMeta",
    "StreamPage",
    "StreamStore",
]


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's identity and the position of one request in its sequence."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Fork:
    """Create the stream as a fork of the stream at ``source``, at position ``offset`` (``None``: the
    source's tail), taking ``sub_offset`` more bytes (JSON: messages) of the record after it."""

    source: str
    offset: int | None = None
    sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class NewStream:
    """A creation request. ``content_type`` ``None``: ``application/octet-stream``, or the source's for
    a fork. ``ttl`` seconds or ``expires_at`` (seconds since the epoch), not both; a fork asking for
    neither inherits its source's. ``data`` is the first append; ``closed`` closes the stream with it."""

    content_type: str | None = None
    ttl: int | None = None
    expires_at: float | None = None
    closed: bool = False
    data: bytes = b""
    fork: Fork | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """An append. Empty ``data`` is allowed only with ``close`` (close-only). ``content_type`` must
    match the stream's when there is data. ``seq`` is ``Stream-Seq``."""

    data: bytes = b""
    content_type: str | None = None
    close: bool = False
    seq: str | None = None
    producer: Producer | None = None


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """A stream as it is after an operation. ``stream_id`` is unique to this incarnation of the path."""

    path: str
    stream_id: int
    content_type: str
    tail: int
    closed: bool
    ttl: int | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Created:
    meta: StreamMeta
    created: bool  # False: the stream existed with the same configuration


@dataclass(frozen=True, slots=True)
class Appended:
    """An append's outcome. ``duplicate``: a producer's retry (or the request that closed the stream,
    repeated); nothing was written. ``producer_seq``: the highest seq accepted in the producer's epoch."""

    meta: StreamMeta
    duplicate: bool = False
    producer_seq: int | None = None


@dataclass(frozen=True, slots=True)
class StreamPage:
    """Records after the requested position, in order. ``next`` is the position of the last record
    returned, or — when none was — the requested position (the tail for a read from the tail; 0 for a
    read from the start)."""

    meta: StreamMeta
    records: list[bytes]
    next: int


class StreamStore(ABC):
    """General streams: records, closure, writers' state, forks and expiry (see the module docstring).

    Unknown paths raise :class:`~flue_core.errors.StreamNotFound`, soft-deleted ones
    :class:`~flue_core.errors.StreamGone` (creation: :class:`~flue_core.errors.StreamConflict`).
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    async def open(self, on_change: ChangeListener) -> None:
        """Connect, create or check the schema, and remember ``on_change`` (called with paths)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    async def create(self, path: str, stream: NewStream) -> Created:
        """Create the stream at ``path`` with ``stream.data`` as its first records, or return the
        existing one when the configuration matches. A fork's source that does not exist raises
        :class:`~flue_core.errors.StreamNotFound`; a fork offset past the source's tail, or a
        sub-offset past the next record's end (or with no next record), raises
        :class:`~flue_core.errors.InvalidStreamRequest`; a content type other than the source's
        raises :class:`~flue_core.errors.ContentTypeMismatch`. A rejected fork changes nothing."""

    @abstractmethod
    async def append(self, path: str, append: Append) -> Appended:
        """Append ``append.data`` as one record (and close, with ``append.close``), applying the
        closure, content-type, producer and ``Stream-Seq`` rules in that order. Renews the TTL."""

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Remove the stream, or soft-delete it while forks read it."""

    @abstractmethod
    async def head(self, path: str) -> StreamMeta:
        """The stream's metadata, without renewing its TTL."""

    @abstractmethod
    async def read(self, path: str, after: int | None, limit: int, max_bytes: int) -> StreamPage:
        """Records after position ``after`` (``-1`` or ``0``: from the start; ``None``: from the tail,
        so none), at most ``limit`` of them and — beyond the first — at most ``max_bytes`` in all.
        A fork's records come from its sources up to the fork offset, then from itself. Renews the TTL."""

    @abstractmethod
    async def purge_expired(self) -> int:
        """Remove (or soft-delete) every stream whose TTL or expiry has passed; return how many.
        Expired streams already behave as gone; this reclaims their storage."""

"""What the read side of the protocol reads from: a :class:`StreamSource`, and what it answers with.

A source is one stream seen through some storage — a run's event stream, a general stream of a
:class:`~flue_core.streams.store.StreamStore`. Positions are integers: a message's position is its
offset (:func:`~flue_core.streams.protocol.offset_text`), ``-1`` is before the stream's start, and a
read *after* a position returns only what comes strictly after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


class Watch(Protocol):
    """A registration for change notifications, made before reading so no change slips in between."""

    async def wait(self, timeout: float) -> bool:
        """``True`` as soon as the stream changed since the last wait, ``False`` after ``timeout`` s."""
        ...


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's metadata when it was read.

    ``tail`` is the position of its last message (what ``offset=now`` resolves to); ``etag_key``
    identifies the stream — and its incarnation, should it be deleted and created again — in ETags.
    ``ttl`` (seconds) and ``expires_at`` (RFC 3339) are reported by ``HEAD`` when set.
    """

    content_type: str
    tail: int
    closed: bool
    etag_key: str
    ttl: int | None = None
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Messages strictly after the requested position, in order, and where to resume.

    Each message is one unit of the stream's bytes: for JSON streams, one or more JSON values
    separated by commas (the read side wraps the chunk in ``[...]``); otherwise raw bytes that are
    concatenated. ``next`` is the position of the last message returned, or the requested position
    (the tail, for a read from the tail) when nothing was returned.
    """

    info: StreamInfo
    messages: Sequence[bytes]
    next: int

    @property
    def up_to_date(self) -> bool:
        """The chunk reaches the tail as it was when read."""
        return self.next >= self.info.tail

    @property
    def at_end(self) -> bool:
        """End of stream: closed, and nothing left to read."""
        return self.info.closed and self.up_to_date


class StreamSource(Protocol):
    """One readable stream. Errors (unknown stream, deleted...) are raised as
    :class:`~flue_core.errors.FlueError` and answered with the error envelope."""

    #: ``Cache-Control`` of reads that return data; ``"no-store"`` for private streams.
    cache_control: str
    #: Longest a waiting reader trusts change notifications before reading again, in seconds (storage
    #: written by other processes notifies nobody here, so readers look again this often).
    recheck: float

    async def describe(self) -> StreamInfo:
        """The stream's metadata (for ``HEAD``). Not an access: it never extends a sliding TTL."""
        ...

    async def read(self, after: int | None, limit: int) -> Chunk:
        """At most ``limit`` messages after position ``after`` (``-1``: from the start; ``None``: from
        the tail, so none). Sources may return fewer (a byte budget) but never none when some exist."""
        ...

    def watch(self) -> AbstractContextManager[Watch]:
        """Register for notifications of this stream's appends, closure and deletion."""
        ...


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How long live reads last. ``long_poll_timeout``: a long-poll without new data answers 204 after
    this many seconds. ``sse_heartbeat``: an idle SSE connection gets a comment this often, so proxies
    keep it open. ``sse_max_duration``: SSE connections end after this many seconds so that clients
    reconnect through caches (§10.2); ``None`` keeps them open. ``chunk_limit``: messages per response."""

    long_poll_timeout: float = 30.0
    sse_heartbeat: float = 15.0
    sse_max_duration: float | None = 60.0
    chunk_limit: int = 1000

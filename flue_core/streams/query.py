"""The query string of a stream read: ``offset``, ``live``, ``tail`` and ``cursor``, strictly checked.

Other parameters are ignored (the protocol allows extensions); a repeated or malformed one of these is
a 400, never silently read as something else.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from flue_core.arguments import decimal, integer
from flue_core.errors import InvalidOffset, InvalidQuery
from flue_core.offsets import START, parse_offset
from flue_core.streams.source import Chunk, StreamSource

LIVE_MODES = ("long-poll", "sse")
MAX_TAIL = 999_999_999


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """A validated read request. ``after`` is the position to read after (``-1``: the start; ``None``:
    the tail, for ``offset=now``); ``tail=N`` asks for the last N messages instead of all of them."""

    after: int | None
    live: str | None = None
    tail: int | None = None
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams) -> ReadQuery:
        offset = _single(params, "offset")
        live = _single(params, "live")
        tail = _single(params, "tail")
        cursor = _single(params, "cursor")
        if offset is not None and offset == "":
            raise InvalidOffset("The offset parameter is empty; use '-1', 'now' or an offset from the stream.")
        after = parse_offset(START if offset is None else offset)
        if live is not None and live not in LIVE_MODES:
            raise InvalidQuery(
                f"Invalid live mode {live!r}; use live=long-poll or live=sse.",
                details={"parameter": "live", "value": live, "allowed": list(LIVE_MODES)},
            )
        if live is not None and offset is None:
            raise InvalidQuery(
                "An offset is required for live reads: pass offset=-1, offset=now or an offset from the stream.",
                details={"parameter": "offset"},
            )
        tail_count = None if tail is None else integer("tail", tail, minimum=1, maximum=MAX_TAIL)
        if cursor is not None and (decimal(cursor) is None or cursor.startswith("-")):
            raise InvalidQuery(
                "cursor must be a cursor returned by the stream (a decimal number).",
                details={"parameter": "cursor", "value": ascii(cursor)[:80]},
            )
        return cls(after=after, live=live, tail=tail_count, cursor=cursor)

    async def start(self, source: StreamSource) -> int | None:
        """The position to read after: ``tail=N`` moves a read from the start to N messages before the
        tail (it changes nothing with ``offset=now`` or an offset)."""
        if self.tail is None or self.after != -1:
            return self.after
        probe = await source.read(None, 0)
        return max(-1, probe.info.tail - self.tail)


def check_within(after: int | None, chunk: Chunk) -> None:
    """An offset past the end of the stream was never returned by it (or belongs to a deleted
    incarnation of it): reading there would wait for nothing, so it is refused."""
    if after is not None and after > chunk.info.tail:
        raise InvalidOffset(
            "The offset is beyond the end of the stream; use an offset returned by this stream.",
            details={"offset_position": after, "tail_position": chunk.info.tail},
        )


def _single(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidQuery(f"Duplicate {name} parameters are not allowed.", details={"parameter": name})
    return values[0] if values else None


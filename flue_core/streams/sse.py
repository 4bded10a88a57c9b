"""Live reads as Server-Sent Events (protocol §5.8).

Each chunk read is one ``event: data`` frame — a JSON array for JSON streams, UTF-8 text for ``text/*``,
base64 otherwise (with ``Stream-SSE-Data-Encoding: base64``) — followed by an ``event: control`` frame
with ``streamNextOffset``, ``streamCursor`` and ``upToDate`` once caught up. A closed stream ends with a
control frame carrying ``streamClosed`` (and no cursor: the client must not reconnect), then the body
ends. Idle connections get a ``: heartbeat`` comment; connections end after ``sse_max_duration`` so
clients reconnect (from their last ``streamNextOffset``) through caches.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse

from flue_core.errors import FlueError
from flue_core.streams.cursor import next_cursor
from flue_core.streams.protocol import SECURITY_HEADERS, STREAM_SSE_DATA_ENCODING, chunk_body, is_text, offset_text
from flue_core.streams.query import ReadQuery, check_within
from flue_core.streams.source import Chunk, ReadOptions, StreamSource

log = logging.getLogger("flue.streams")

HEARTBEAT = b": heartbeat\n\n"
#: Every line terminator SSE knows; a payload line break becomes a new ``data:`` line, so a payload can
#: never end an event or inject one.
_LINES = re.compile(r"\r\n|\r|\n")


async def sse_response(source: StreamSource, query: ReadQuery, options: ReadOptions) -> StreamingResponse:
    """Read the first chunk now (so an unknown stream or a bad offset is an error status, not an event),
    then stream."""
    after = await query.start(source)
    first = await source.read(after, options.chunk_limit)
    check_within(after, first)
    headers = {**SECURITY_HEADERS, "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
    if not is_text(first.info.content_type):
        headers[STREAM_SSE_DATA_ENCODING] = "base64"
    return StreamingResponse(_events(source, first, query.cursor, options), headers=headers)


async def _events(source: StreamSource, chunk: Chunk, cursor: str | None, options: ReadOptions) -> AsyncIterator[bytes]:
    started = last_write = anyio.current_time()
    try:
        with source.watch() as watch:
            while True:
                yield frames(chunk, cursor)
                last_write = anyio.current_time()
                if chunk.at_end:
                    return
                after = chunk.next
                chunk = await source.read(after, options.chunk_limit)  # after registering: nothing slips by
                while not chunk.messages and not chunk.info.closed:
                    now = anyio.current_time()
                    left = math.inf if options.sse_max_duration is None else started + options.sse_max_duration - now
                    if left <= 0:
                        return
                    if now - last_write >= options.sse_heartbeat:
                        yield HEARTBEAT
                        last_write = now
                    await watch.wait(min(source.recheck, left, last_write + options.sse_heartbeat - now))
                    chunk = await source.read(after, options.chunk_limit)
    except FlueError as error:  # the stream went away (deleted, expired) under a live reader
        log.debug("flue: SSE read ended: %s", error)


def frames(chunk: Chunk, cursor: str | None) -> bytes:
    """The ``data`` frame of the chunk's messages (if any) and the ``control`` frame that follows it."""
    out = b""
    if chunk.messages:
        content_type = chunk.info.content_type
        body = chunk_body(content_type, list(chunk.messages))
        if is_text(content_type):
            payload = body.decode("utf-8", errors="replace")
        else:
            payload = base64.b64encode(body).decode("ascii")
        out += b"event: data\n" + _data_lines(payload)
    control: dict[str, object] = {"streamNextOffset": offset_text(chunk.next)}
    if chunk.at_end:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        control["streamCursor"] = next_cursor(cursor)
        if chunk.up_to_date:
            control["upToDate"] = True
    return out + b"event: control\n" + _data_lines(json.dumps(control, separators=(",", ":")))


def _data_lines(payload: str) -> bytes:
    # "data:" without a space: readers strip exactly one leading space, which would eat one of the data's.
    return "".join(f"data:{line}\n" for line in _LINES.split(payload)).encode("utf-8") + b"\n"

"""The read side of the Durable Streams protocol over any :class:`StreamSource`: ``GET`` and ``HEAD``.

``await read_response(request, source)`` answers a catch-up read (one chunk, ``Stream-Next-Offset``,
``Stream-Up-To-Date``, ``Stream-Closed`` at the end of a closed stream, ``ETag`` / ``If-None-Match`` →
304), a long-poll (waits for data, 204 on timeout, at once when the stream is closed), SSE
(:mod:`flue_core.streams.sse`) and ``HEAD``. Every error — a bad parameter, an unknown stream — is the
one JSON error envelope. Waiting readers are woken by the source's notifications, never by polling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from flue_core.errors import FlueError
from flue_core.http.envelope import error_response
from flue_core.streams.cursor import next_cursor
from flue_core.streams.protocol import (
    SECURITY_HEADERS,
    STREAM_CLOSED,
    STREAM_CURSOR,
    STREAM_EXPIRES_AT,
    STREAM_NEXT_OFFSET,
    STREAM_TTL,
    STREAM_UP_TO_DATE,
    chunk_body,
    offset_text,
)
from flue_core.streams.query import ReadQuery, check_within
from flue_core.streams.source import Chunk, ReadOptions, StreamInfo, StreamSource, Watch
from flue_core.streams.sse import sse_response

__all__ = ["Chunk", "ReadOptions", "StreamInfo", "StreamSource", "Watch", "read_response"]

#: What a request answers when its client went away while it waited (nginx's "client closed request").
CLIENT_CLOSED = 499
T = TypeVar("T")


async def read_response(request: Request, source: StreamSource, options: ReadOptions | None = None) -> Response:
    """Answer a ``GET`` or ``HEAD`` of ``source`` (the caller has routed and authorised the request)."""
    options = options or ReadOptions()
    try:
        if request.method == "HEAD":
            return head_response(await source.describe())
        query = ReadQuery.parse(request.query_params)
        if query.live == "sse":
            return await sse_response(source, query, options)
        if query.live == "long-poll":
            return await _long_poll(request, source, query, options)
        after = await query.start(source)
        chunk = await source.read(after, options.chunk_limit)
        check_within(after, chunk)
        return _data_response(request, source, query, after, chunk)
    except FlueError as error:
        return error_response(error)
    except ClientDisconnect:
        return Response(status_code=CLIENT_CLOSED)


def head_response(info: StreamInfo) -> Response:
    """Metadata only: the tail offset, closure, TTL or expiry; never cached (the tail moves)."""
    headers = {
        **SECURITY_HEADERS,
        "content-type": info.content_type,
        "cache-control": "no-store",
        STREAM_NEXT_OFFSET: offset_text(info.tail),
        "etag": _etag(info, -1, info.tail, info.closed),
    }
    if info.closed:
        headers[STREAM_CLOSED] = "true"
    if info.ttl is not None:
        headers[STREAM_TTL] = str(info.ttl)
    if info.expires_at is not None:
        headers[STREAM_EXPIRES_AT] = info.expires_at
    return Response(status_code=200, headers=headers)


async def _long_poll(request: Request, source: StreamSource, query: ReadQuery, options: ReadOptions) -> Response:
    after = await query.start(source)
    with source.watch() as watch:
        chunk = await source.read(after, options.chunk_limit)
        check_within(after, chunk)
        if not chunk.messages and not chunk.info.closed:
            waited_from = chunk.next  # offset=now waits from the tail it just read
            chunk = await _unless_disconnected(
                request, lambda: _wait_for_data(source, watch, waited_from, chunk, options)
            )
    if chunk.messages:
        return _data_response(request, source, query, after, chunk, live=True)
    headers = {
        **SECURITY_HEADERS,
        "cache-control": "no-store",
        STREAM_NEXT_OFFSET: offset_text(chunk.next),
        STREAM_UP_TO_DATE: "true",
        STREAM_CURSOR: next_cursor(query.cursor),
    }
    if chunk.info.closed:
        headers[STREAM_CLOSED] = "true"
    return Response(status_code=204, headers=headers)


async def _wait_for_data(source: StreamSource, watch: Watch, after: int, chunk: Chunk, options: ReadOptions) -> Chunk:
    """Read again on each notification until data arrives, the stream closes or the timeout passes."""
    deadline = anyio.current_time() + options.long_poll_timeout
    while True:
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            return chunk
        await watch.wait(min(remaining, source.recheck))
        chunk = await source.read(after, options.chunk_limit)
        if chunk.messages or chunk.info.closed:
            return chunk


def _data_response(
    request: Request, source: StreamSource, query: ReadQuery, after: int | None, chunk: Chunk, *, live: bool = False
) -> Response:
    info = chunk.info
    headers = {**SECURITY_HEADERS, "content-type": info.content_type, STREAM_NEXT_OFFSET: offset_text(chunk.next)}
    if chunk.up_to_date:
        headers[STREAM_UP_TO_DATE] = "true"
    if chunk.at_end:
        headers[STREAM_CLOSED] = "true"
    if live:
        headers[STREAM_CURSOR] = next_cursor(query.cursor)
    if after is None:  # offset=now: the tail moves, so nothing about this answer may be reused
        headers["cache-control"] = "no-store"
    else:
        etag = _etag(info, after, chunk.next, chunk.at_end)
        headers["etag"] = etag
        headers["cache-control"] = source.cache_control if chunk.messages else "no-store"
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "content-type"})
    return Response(chunk_body(info.content_type, list(chunk.messages)), status_code=200, headers=headers)


def _etag(info: StreamInfo, start: int, end: int, closed: bool) -> str:
    """Names one answer: the stream, the range it covers, and whether it ends a closed stream (so a
    closure changes the ETag even when no data came with it)."""
    return f'"{info.etag_key}:{offset_text(start)}:{offset_text(end)}{":c" if closed else ""}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return any(tag in (etag, "*") for tag in candidates)


async def _unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` while listening for the client leaving; raise :class:`ClientDisconnect` if it does,
    so a long-poll whose client is gone stops waiting at once."""
    outcome: list[tuple[bool, object]] = []
    async with anyio.create_task_group() as tasks:

        async def run() -> None:
            try:
                outcome.append((True, await work()))
            except Exception as exc:  # re-raised below, outside the task group
                outcome.append((False, exc))
            tasks.cancel_scope.cancel()

        async def listen() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        tasks.start_soon(run)
        tasks.start_soon(listen)
    if not outcome:
        raise ClientDisconnect()
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]

"""A general Durable Streams server over a :class:`~flue_core.streams.store.StreamStore`.

``streams_app(store)`` is a Starlette app speaking the whole protocol on every path under the prefix a
host mounts it at: ``PUT`` creates (or forks), ``POST`` appends (or closes), ``DELETE`` deletes, ``GET``
and ``HEAD`` read through :func:`~flue_core.streams.read.read_response`. Readers waiting on a stream are
woken by the store's change notifications.

Run as its own app (uvicorn runs its lifespan), it opens and closes the store itself. Mounted in
another app (a Starlette ``Mount`` runs no lifespan), the host opens it around its own lifetime::

    streams = streams_app(SqliteStreamStore("sqlite:///.flue/flue.db"))
    async with streams.state.streams:   # the StreamServer: opens the store, closes it after
        ...
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from flue_core.changes import Changes
from flue_core.errors import (
    ConfigurationError,
    FlueError,
    ProducerSequenceGap,
    StaleProducerEpoch,
    StoreUnavailable,
    StreamClosed,
)
from flue_core.http.body import read_limited
from flue_core.http.envelope import error_response
from flue_core.http.error_handling import ErrorEnvelope
from flue_core.http.errors import MethodNotAllowed
from flue_core.runs import recheck_interval
from flue_core.streams.protocol import (
    PRODUCER_EPOCH,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    PRODUCER_SEQ,
    SECURITY_HEADERS,
    STREAM_CLOSED,
    STREAM_NEXT_OFFSET,
    offset_text,
)
from flue_core.streams.read import read_response
from flue_core.streams.source import Chunk, ReadOptions, StreamInfo, Watch
from flue_core.streams.store import StreamMeta, StreamStore
from flue_core.streams.writes import append_request, expiry_text, new_stream

log = logging.getLogger("flue.streams")

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS")
#: Cache-Control of reads that return data: chunks never change once written (§10.1).
PUBLIC_CACHE = "public, max-age=60, stale-while-revalidate=300"
DEFAULT_MAX_APPEND = 16 * 1024 * 1024
#: Bytes of records a read returns beyond its first.
CHUNK_BYTES = 1024 * 1024
_REQUEST_HEADERS = (
    "content-type, authorization, if-none-match, stream-seq, stream-ttl, stream-expires-at, stream-closed,"
    " producer-id, producer-epoch, producer-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset"
)
_EXPOSED_HEADERS = (
    "stream-next-offset, stream-cursor, stream-up-to-date, stream-closed, stream-ttl, stream-expires-at,"
    " stream-sse-data-encoding, producer-epoch, producer-seq, producer-expected-seq, producer-received-seq,"
    " etag, location, content-type"
)


class StreamServer:
    """The state behind the app: the store, the notifications readers wait on, and the options.

    ``cache_control``: of reads that return data (``"no-store"`` for private streams).
    ``max_append_bytes``: larger bodies get 413. ``cors_origin``: ``Access-Control-Allow-Origin`` of
    every response, and preflights answered (``None``: no CORS). ``purge_interval``: seconds between
    sweeps that reclaim expired streams (which already answer as gone before that).
    """

    def __init__(
        self,
        store: StreamStore,
        *,
        read_options: ReadOptions | None = None,
        cache_control: str = PUBLIC_CACHE,
        max_append_bytes: int = DEFAULT_MAX_APPEND,
        cors_origin: str | None = "*",
        purge_interval: float = 60.0,
    ) -> None:
        if not isinstance(max_append_bytes, int) or max_append_bytes < 1:
            raise ConfigurationError(f"max_append_bytes must be a number of bytes >= 1, not {max_append_bytes!r}.")
        if not purge_interval > 0:
            raise ConfigurationError(f"purge_interval must be > 0 seconds, not {purge_interval!r}.")
        self.store = store
        self.read_options = read_options or ReadOptions()
        self.cache_control = cache_control
        self.max_append_bytes = max_append_bytes
        self.cors_origin = cors_origin
        self.purge_interval = purge_interval
        self.changes = Changes()
        self.recheck = recheck_interval(store)  # a stream store is shared, or not, as a run store is
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> StreamServer:
        await self.store.open(self.changes.notify)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._purge)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)
        await self.store.close()

    async def respond(self, request: Request, path: str) -> Response:
        if self._tasks is None:
            raise StoreUnavailable("The stream server is not open: open it (async with) before serving requests.")
        method = request.method
        if method in ("GET", "HEAD"):
            return await read_response(request, StoredStream(self, path), self.read_options)
        if method == "OPTIONS" and self.cors_origin is not None:
            return Response(status_code=204, headers=self._preflight(request))
        if method not in ("PUT", "POST", "DELETE"):
            raise MethodNotAllowed(method, [m for m in METHODS if m != "OPTIONS" or self.cors_origin is not None])
        try:
            if method == "DELETE":
                await self.store.delete(path)
                return Response(status_code=204)
            body = await read_limited(request, self.max_append_bytes)
            if method == "PUT":
                return await self._create(request, path, body)
            return await self._append(request, path, body)
        except FlueError as error:
            return error_response(error, headers=_error_headers(error))

    async def _create(self, request: Request, path: str, body: bytes) -> Response:
        created = await self.store.create(path, new_stream(request.headers, body, request.scope.get("root_path", "")))
        headers = _write_headers(created.meta)
        headers["content-type"] = created.meta.content_type
        if not created.created:
            return Response(status_code=200, headers=headers)
        headers["location"] = str(request.url.replace(query=""))
        return Response(status_code=201, headers=headers)

    async def _append(self, request: Request, path: str, body: bytes) -> Response:
        append = append_request(request.headers, body)
        result = await self.store.append(path, append)
        headers = _write_headers(result.meta)
        if append.producer is None:
            return Response(status_code=204, headers=headers)
        headers[PRODUCER_EPOCH] = str(append.producer.epoch)
        headers[PRODUCER_SEQ] = str(result.producer_seq)
        # §5.2.1: 200 when a producer's data was accepted, 204 for a duplicate or a close-only request.
        accepted = bool(append.data) and not result.duplicate
        return Response(status_code=200 if accepted else 204, headers=headers)

    def _preflight(self, request: Request) -> dict[str, str]:
        return {
            "access-control-allow-methods": ", ".join(METHODS),
            "access-control-allow-headers": request.headers.get("access-control-request-headers") or _REQUEST_HEADERS,
            "access-control-max-age": "86400",
        }

    async def _purge(self) -> None:
        while True:
            await anyio.sleep(self.purge_interval)
            try:
                await self.store.purge_expired()
            except Exception:
                log.exception("flue: purging expired streams failed; retrying later")


class StoredStream:
    """One stream of the server's store, as a :class:`~flue_core.streams.source.StreamSource`."""

    def __init__(self, server: StreamServer, path: str) -> None:
        self.server = server
        self.path = path
        self.cache_control = server.cache_control
        self.recheck = server.recheck

    async def describe(self) -> StreamInfo:
        return _info(await self.server.store.head(self.path))

    async def read(self, after: int | None, limit: int) -> Chunk:
        page = await self.server.store.read(self.path, after, limit, CHUNK_BYTES)
        return Chunk(_info(page.meta), page.records, page.next)

    def watch(self) -> AbstractContextManager[Watch]:
        return self.server.changes.watch(self.path)


def streams_app(store: StreamStore, *, open_store: bool = True, **options: Any) -> Starlette:
    """The Starlette app of a :class:`StreamServer` over ``store`` (``options`` are its keyword
    arguments). With ``open_store``, the app's lifespan opens and closes the server; otherwise the host
    does, with ``async with app.state.streams``."""
    server = StreamServer(store, **options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not open_store:
            yield
            return
        async with server:
            yield

    app = Starlette(
        routes=[Route("/{path:path}", _Endpoint(server))],  # an ASGI endpoint: every method reaches it
        middleware=[Middleware(ErrorEnvelope), Middleware(_StreamHeaders, cors_origin=server.cors_origin)],
        lifespan=lifespan,
    )
    app.state.streams = server
    return app


class _Endpoint:
    def __init__(self, server: StreamServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.server.respond(request, "/" + request.path_params["path"])
        await response(scope, receive, send)


class _StreamHeaders:
    """Security headers (§12.7) and CORS on every response, errors included."""

    def __init__(self, app: Any, cors_origin: str | None) -> None:
        self.app = app
        extra = dict(SECURITY_HEADERS)
        if cors_origin is not None:
            extra["access-control-allow-origin"] = cors_origin
            extra["access-control-expose-headers"] = _EXPOSED_HEADERS
        self.extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _info(meta: StreamMeta) -> StreamInfo:
    return StreamInfo(
        content_type=meta.content_type,
        tail=meta.tail,
        closed=meta.closed,
        etag_key=str(meta.stream_id),
        ttl=meta.ttl,
        expires_at=None if meta.expires_at is None else expiry_text(meta.expires_at),
    )


def _write_headers(meta: StreamMeta) -> dict[str, str]:
    headers = {STREAM_NEXT_OFFSET: offset_text(meta.tail)}
    if meta.closed:
        headers[STREAM_CLOSED] = "true"
    return headers


def _error_headers(error: FlueError) -> Mapping[str, str]:
    """The headers the protocol puts on an error, so clients need not parse its body."""
    details = error.details
    if isinstance(error, StreamClosed):
        return {STREAM_CLOSED: "true", STREAM_NEXT_OFFSET: details["next_offset"]}
    if isinstance(error, StaleProducerEpoch):
        return {PRODUCER_EPOCH: str(details["current_epoch"])}
    if isinstance(error, ProducerSequenceGap):
        return {PRODUCER_EXPECTED_SEQ: str(details["expected_seq"]), PRODUCER_RECEIVED_SEQ: str(details["received_seq"])}
    return {}

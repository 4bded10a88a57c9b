"""A run's event stream as a Durable Streams source, and the one entry point for ``GET|HEAD /runs/{id}``.

Events are stored as JSON text and served as-is. A run stream is ``application/json``, read-only over
HTTP (only the runtime appends to it) and closed once ``run_end`` is stored. Offsets are the run offsets
of :mod:`flue_core.offsets`: an event's offset is its index, and reads return events strictly after it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from starlette.requests import Request
from starlette.responses import Response

from flue_core.errors import RunNotFound
from flue_core.runs import recheck_interval
from flue_core.runtime import Runtime
from flue_core.store import EventPage
from flue_core.streams.protocol import JSON
from flue_core.streams.read import read_response
from flue_core.streams.source import Chunk, ReadOptions, StreamInfo, Watch


async def serve_run_stream(
    request: Request, runtime: Runtime, run_id: str, options: ReadOptions | None = None
) -> Response:
    """Answer ``GET`` / ``HEAD`` of the run's event stream with the Durable Streams read protocol.

    The caller has already authorised the request. An unknown run is a 404 ``run_not_found`` envelope.
    """
    return await read_response(request, RunStream(runtime, run_id), options)


class RunStream:
    """The :class:`~flue_core.streams.source.StreamSource` of one run, over ``runtime.target.store``."""

    #: Run events are private to whoever was granted them: never cached on the way.
    cache_control = "no-store"

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.recheck = recheck_interval(runtime.target.store)

    async def describe(self) -> StreamInfo:
        return self._info(await self._page(None, 0))

    async def read(self, after: int | None, limit: int) -> Chunk:
        page = await self._page(after, limit)
        messages = [event.json.encode("utf-8") for event in page.events]
        last = page.last_index
        return Chunk(self._info(page), messages, last if last is not None else page.tail if after is None else after)

    def watch(self) -> AbstractContextManager[Watch]:
        return self.runtime.changes.watch(self.run_id)

    async def _page(self, after: int | None, limit: int) -> EventPage:
        page = await self.runtime.target.store.read(self.run_id, after, limit)
        if page is None:
            raise RunNotFound(f"Run {self.run_id!r} was not found.", details={"run_id": self.run_id})
        return page

    def _info(self, page: EventPage) -> StreamInfo:
        return StreamInfo(content_type=JSON, tail=page.tail, closed=page.closed, etag_key=self.run_id)

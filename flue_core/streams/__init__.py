"""Durable Streams (``references/durable-streams-PROTOCOL.md``): run event streams over HTTP, and a
general stream server on the same storage. ``docs/streaming.md`` is the reference.

* :func:`read_response` answers ``GET``/``HEAD`` of any :class:`StreamSource` (catch-up, long-poll, SSE);
* :func:`serve_run_stream` is that read side for a run's event stream (``GET|HEAD /runs/{run_id}``);
* :func:`streams_app` is a whole Durable Streams server over a :class:`StreamStore`.
"""

from flue_core.streams.read import read_response
from flue_core.streams.runs import RunStream, serve_run_stream
from flue_core.streams.server import StreamServer, streams_app
from flue_core.streams.source import Chunk, ReadOptions, StreamInfo, StreamSource
from flue_core.streams.store import StreamStore

__all__ = [
    "Chunk",
    "ReadOptions",
    "RunStream",
    "StreamInfo",
    "StreamServer",
    "StreamSource",
    "StreamStore",
    "read_response",
    "serve_run_stream",
    "streams_app",
]

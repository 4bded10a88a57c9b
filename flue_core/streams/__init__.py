"""Durable Streams (``references/durable-streams-PROTOCOL.md``): run event streams over HTTP, and a
general stream server on the same storage.

* :func:`read_response` answers ``GET``/``HEAD`` of any :class:`StreamSource` (catch-up, long-poll, SSE);
* :func:`serve_run_stream` is that read side for a run's event stream (``GET|HEAD /runs/{run_id}``).
"""

from flue_core.streams.read import read_response
from flue_core.streams.runs import RunStream, serve_run_stream
from flue_core.streams.source import Chunk, ReadOptions, StreamInfo, StreamSource

__all__ = ["Chunk", "ReadOptions", "RunStream", "StreamInfo", "StreamSource", "read_response", "serve_run_stream"]

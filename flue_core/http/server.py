"""Serving an ASGI app with uvicorn for the length of an ``async with`` block, on a free local port."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def serve(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (``0``: a free port) and yield its base URL, ``http://host:port``.

    The server runs on the current event loop, so the app shares it with a runtime opened by the caller
    (a loop on uvloop, where installed, serves several times faster: see :func:`event_loop_options`);
    uvicorn parses HTTP with httptools where it is installed, else with h11.
    ``options`` go to :class:`uvicorn.Config` (``lifespan="on"`` to run the app's lifespan...). The
    server stops when the block ends, giving open requests (live reads too) up to
    ``timeout_graceful_shutdown`` seconds (default 2) to finish. A port already in use raises
    :class:`OSError` before the block runs; the socket is closed whatever happens.
    """
    # IPPROTO_TCP, as asyncio itself would: transports only turn Nagle's algorithm off (TCP_NODELAY) on
    # sockets that say they are TCP, and with it on small responses wait on delayed ACKs (~40 ms).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:  # from here on the socket is closed however the block ends, a failed bind included
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        options.setdefault("lifespan", "off")
        options.setdefault("log_level", "warning")
        options.setdefault("timeout_graceful_shutdown", 2)  # live reads (SSE) would otherwise hold the exit
        server = _Server(uvicorn.Config(app, **options))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            while not server.started:
                if server.should_exit:
                    raise RuntimeError(f"uvicorn could not start on {host}:{bound_port}")
                await anyio.sleep(0.005)
            try:
                yield f"http://{host}:{bound_port}" if ":" not in host else f"http://[{host}]:{bound_port}"
            finally:
                server.should_exit = True
    except BaseExceptionGroup as group:
        # The block's own error, not wrapped in the group of the server's task.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        sock.close()


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals stay with the host program (Ctrl-C stops it, not just this server)


def event_loop_options() -> dict[str, Any]:
    """Keyword arguments for ``anyio.run`` that run a server's event loop on uvloop where it is
    installed (``{"backend_options": {"use_uvloop": True}}``), else none: asyncio's own loop."""
    if importlib.util.find_spec("uvloop") is None:
        return {}
    return {"backend_options": {"use_uvloop": True}}

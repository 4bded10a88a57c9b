"""``flue serve APP``: the ASGI app on uvicorn until stopped by Ctrl-C or SIGTERM, then exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import ChangeReload

from flue_core.cli.app import AppNotLoaded, import_object, importable_from_cwd
from flue_core.cli.exits import Exit
from flue_core.cli.stopping import sigterm_as_ctrl_c


def serve(args: argparse.Namespace) -> int:
    """Serve the ASGI app with uvicorn until stopped. The app is imported first (unless reloading,
    where uvicorn imports it in its worker) so a wrong import string is a configuration error.

    What ``uvicorn.run`` does, with :class:`StoppingServer` for its server."""
    app: Any = args.app
    if args.reload:
        importable_from_cwd()  # uvicorn's reloading worker inherits sys.path
    else:
        app = import_object(args.app)
        if args.factory and not callable(app):
            raise AppNotLoaded(f"{args.app!r} is not callable, so it cannot be an app factory (--factory).")
        prefix = getattr(getattr(app, "state", None), "dashboard", None)
        if isinstance(prefix, str):  # an app made by create_app(..., dashboard=True)
            print(f"flue: dashboard at http://{args.host}:{args.port}{prefix}/", file=sys.stderr)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, reload=args.reload, factory=args.factory, log_level=args.log_level
    )
    server = StoppingServer(config)
    try:
        if config.should_reload:
            # The reloader process stops its worker with SIGTERM on Ctrl-C or SIGTERM, and returns.
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # the end of a stop asked by a signal (see StoppingServer)
        return Exit.COMPLETED
    except SystemExit as exc:  # uvicorn exits 1 when it cannot start (address in use, failed lifespan)
        return Exit.COMPLETED if exc.code in (0, None) else Exit.UNAVAILABLE
    if not server.started and not config.should_reload:
        return Exit.UNAVAILABLE  # uvicorn logged why
    return Exit.COMPLETED


class StoppingServer(uvicorn.Server):
    """uvicorn's server, stopped gracefully by a first SIGINT or SIGTERM and at once by a second.

    While it serves, uvicorn handles both signals itself: the first makes it shut down gracefully
    (its lifespan's shutdown closes the runtime, whose running runs get their shutdown grace), then
    it restores the handlers it found and raises the signal again (``Server.capture_signals``).
    Under :func:`~flue_core.cli.stopping.sigterm_as_ctrl_c` that handler is Ctrl-C's for both, and
    the process ends on the :class:`KeyboardInterrupt` asyncio's runner raises, its exit handlers
    run. A second signal only cuts uvicorn's wait for open connections short (and only a SIGINT),
    not its lifespan's shutdown: here either kind ends the event loop at its next turn with a
    :class:`KeyboardInterrupt`, as a second Ctrl-C ends ``asyncio.run``, whose runner then cancels
    what is left (the runtime ends its runs and closes its store).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        with sigterm_as_ctrl_c():  # here too for the reloader's worker process, where the app runs
            super().run(sockets)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and self._loop is not None:
            self.force_exit = True
            print("flue: stopping at once: the shutdown grace is cut short", file=sys.stderr)
            # What uvicorn would log from here on is the cancellation asked for (a lifespan
            # "failed" by it, requests cut off), with tracebacks: not errors to report.
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            self._loop.call_soon_threadsafe(_interrupt)  # between two callbacks: no task is cut mid-step
            return
        super().handle_exit(sig, frame)


def _interrupt() -> None:
    raise KeyboardInterrupt

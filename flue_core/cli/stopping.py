"""SIGTERM stops a Flue process as Ctrl-C does: gracefully, with its exit handlers run.

A deploy stops a process with SIGTERM, whose default action ends Python at once: no ``finally``, no
``atexit`` handler (an OpenTelemetry SDK's pending spans are lost). Under :func:`sigterm_as_ctrl_c`
a SIGTERM takes Ctrl-C's path instead, whatever that path is where it arrives: asyncio's and anyio's
runners cancel their main task (the runtime closes with its shutdown grace) and make a second one
raise :class:`KeyboardInterrupt`, uvicorn shuts its server down, blocking code gets
:class:`KeyboardInterrupt`. The program then ends as it ends on Ctrl-C, and its exit code may tell
the two apart with :attr:`SigtermAsCtrlC.terminated`.

The programs in ``examples/`` use it as ``with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class SigtermAsCtrlC:
    """While entered, SIGTERM is handed to the process's Ctrl-C handling; the previous handler is
    restored on exit. Only the main thread may handle signals: elsewhere it changes nothing."""

    def __init__(self) -> None:
        self.terminated = False  # a SIGTERM came
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> SigtermAsCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._as_ctrl_c)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _as_ctrl_c(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            # Ctrl-C is ignored here (a background job of a shell) or would kill the process: stop
            # the way Python's own Ctrl-C handler does.
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)  # through the handler in place: asyncio's, uvicorn's, Python's


def sigterm_as_ctrl_c() -> SigtermAsCtrlC:
    """A context in which a SIGTERM does what a Ctrl-C would (see the module's docstring)."""
    return SigtermAsCtrlC()

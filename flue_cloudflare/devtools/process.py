"""Run workerd: start it, wait for a real HTTP answer, stop it, kill it, start it again.

workerd's socket accepts connections at once, but a request waits until Python is up (a cold start
takes seconds: Pyodide, the standard library and every imported package load first), so readiness is
an HTTP answer from the application, not an open port. A 5xx answer while starting means the Worker
failed to load, and is reported with workerd's log rather than waited out.

workerd never outlives the process that started it: on Linux the kernel kills it when that process
dies, however it dies (SIGTERM, SIGHUP, SIGKILL, a crash), since it is started with a parent-death
signal from a thread that lives as long as the process. A workerd left running would keep its port
and go on executing runs beside the next one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flue_cloudflare.devtools.errors import WorkerdFailed

#: Cold start measured 5-7 s on a 2-core machine; a loaded CI machine may take several times that.
START_TIMEOUT = 90.0
LOG_TAIL = 6000


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Workerd:
    """One workerd process serving ``config`` (a file whose constant ``const`` is the ``Config``).

    ``url`` is the application's base URL and ``ready_path`` the path whose answer means it is up.
    The process's output goes to ``log``. Start, stop, kill and start again reuse the same
    configuration, ports and storage.
    """

    def __init__(
        self,
        binary: Path,
        config: Path,
        *,
        const: str,
        bundle_dir: Path,
        url: str,
        log: Path,
        ready_path: str = "/",
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.binary = binary
        self.pass_fds = pass_fds
        """Descriptors workerd inherits: a lock on its storage lives as long as it does."""
        self.config = config
        self.const = const
        self.bundle_dir = bundle_dir
        self.url = url
        self.log = log
        self.ready_path = ready_path
        self._process: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None
        """Seconds from launch to the first HTTP answer, of the last start."""

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary),
            "serve",
            str(self.config),
            self.const,
            "--experimental",
            # Logs what a Worker's handlers raise (a failed scheduled() or queue() is otherwise silent).
            "--verbose",
            "--pyodide-bundle-disk-cache-dir",
            str(self.bundle_dir),
        ]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Launch workerd and return once the application answers ``ready_path`` with a status below
        500; :class:`WorkerdFailed` (with the log) if it exits, fails to load or does not answer."""
        if self.running:
            raise WorkerdFailed(f"workerd is already running (pid {self.pid}).")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n--- workerd started {time.strftime('%H:%M:%S')}: {' '.join(self.command)}\n".encode())
            out.flush()
            self._process = spawn_with_parent(
                self.command,
                cwd=self.config.parent,
                env={**os.environ, "PWD": str(self.config.parent)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Ctrl-C in a terminal never reaches it
                pass_fds=self.pass_fds,
            )
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.kill()
            raise
        self.started_in = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        target = self.url.rstrip("/") + self.ready_path
        while True:
            if not self.running:
                raise WorkerdFailed(
                    f"workerd exited with {self._process.returncode if self._process else '?'}" + self.tail()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerdFailed(f"workerd did not answer GET {target} in time" + self.tail())
            try:
                response = httpx.get(target, timeout=remaining)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code >= 500:
                raise WorkerdFailed(
                    f"The Worker failed to load: GET {target} answered {response.status_code}"
                    f" {response.text[:2000]!r}" + self.tail()
                )
            return

    def stop(self, timeout: float = 10.0) -> None:
        """End workerd gracefully (SIGTERM), killing it if it has not exited within ``timeout``."""
        if not self.running:
            return
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill workerd at once (SIGKILL to its process group), as a crash would."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again on the same configuration and storage."""
        self.stop()
        self.start(timeout)

    def tail(self) -> str:
        """The end of workerd's log, to append to an error message."""
        try:
            text = self.log.read_bytes()[-LOG_TAIL:].decode(errors="replace")
        except OSError:
            return ""
        return f"\n--- workerd log ({self.log}) ---\n{text}"


_PR_SET_PDEATHSIG = 1
_spawn_requests: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]]] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send SIGKILL to the child when its parent thread ends
    (Linux's ``PR_SET_PDEATHSIG``); ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    return set_parent_death_signal


def _spawner_loop() -> None:
    while True:
        start, answer = _spawn_requests.get()
        try:
            answer.put((start(), None))
        except BaseException as error:  # handed back to the caller's thread
            answer.put((None, error))


def spawn_with_parent(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **options)`` for a child that dies with this process.

    The kernel's parent-death signal follows the *thread* that forked, so the child is forked by one
    daemon thread that lives as long as the process, whichever thread asks.
    """
    global _spawner
    preexec = _parent_death_signal()
    if preexec is None:
        return subprocess.Popen(command, **options)
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawner_loop, name="flue-workerd-spawner", daemon=True)
            _spawner.start()
    answer: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _spawn_requests.put((lambda: subprocess.Popen(command, preexec_fn=preexec, **options), answer))
    process, error = answer.get()
    if error is not None:
        raise error
    return process  # type: ignore[no-any-return]


@contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """While entered (in the main thread), SIGTERM and SIGHUP raise :class:`KeyboardInterrupt` as
    Ctrl-C does, so that a command serving workerd stops it on its way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

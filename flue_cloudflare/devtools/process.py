"""Run workerd: start it, wait for a real HTTP answer, stop it, kill it, start it again.

workerd's socket accepts connections at once, but a request waits until Python is up (a cold start
takes seconds: Pyodide, the standard library and every imported package load first), so readiness is
an HTTP answer from the application, not an open port. A 5xx answer while starting means the Worker
failed to load, and is reported with workerd's log rather than waited out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

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
    ) -> None:
        self.binary = binary
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
            self._process = subprocess.Popen(
                self.command,
                cwd=self.config.parent,
                env={**os.environ, "PWD": str(self.config.parent)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a signal to the tests never reaches it
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

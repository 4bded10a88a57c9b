"""A real ``redis-server`` process for tests and benchmarks: :class:`RedisServer`.

It runs ``redis-server`` from ``PATH`` on a free port of 127.0.0.1, with its own directory and the
append-only file on, and can stop it (``SHUTDOWN``: the AOF is flushed), kill it (``SIGKILL``: what
``appendfsync`` did not write is lost) and start it again on the same port and directory, so clients
reconnect to the same URL and find what the AOF kept. The pytest fixtures built on it are in
:mod:`flue_node_like.testing_redis`.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote


__all__ = ["INSTALL_HINT", "RedisServer", "RedisServerMissing"]

APPENDFSYNC = ("always", "everysec", "no")
INSTALL_HINT = (
    "redis-server (Redis >= 7) is not on PATH; the Redis tests need it. Install it with"
    " `apt-get install redis-server` (Debian, Ubuntu), `brew install redis` (macOS) or from"
    " https://redis.io/download, or run ./scripts/test, which installs it with apt-get when it can."
)


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not installed (the message says how to install it)."""


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its data in ``directory``.

    ``appendfsync``: ``always`` (every write reaches the disk before it is acknowledged), ``everysec``
    (Redis' default: up to a second of writes can be lost to a crash of the machine or a ``kill -9``)
    or ``no``. ``password`` turns on ``requirepass``. The port is chosen at the first :meth:`start` and
    kept across restarts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendfsync: str = "everysec",
        password: str | None = None,
        executable: str | None = None,
    ) -> None:
        if appendfsync not in APPENDFSYNC:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC)}, not {appendfsync!r}.")
        found = executable or shutil.which("redis-server")
        if found is None:
            raise RedisServerMissing(INSTALL_HINT)
        self.executable = found
        self.directory = Path(directory)
        self.appendfsync = appendfsync
        self.password = password
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, prefix: str | None = None, *, db: int = 0, password: str | None = None) -> str:
        """``redis://`` URL of this server (with ``password``, else the server's), optionally with a
        key prefix."""
        assert self.port is not None, "start the server first"
        secret = password if password is not None else self.password
        auth = f":{quote(secret, safe='')}@" if secret else ""  # reserved characters percent-encoded
        query = f"?prefix={prefix}" if prefix else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}{query}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (on its previous port if it ran before) and wait until it answers."""
        if self.running:
            raise RuntimeError("the Redis server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in itertools.count():
            port = self.port or _free_port()
            self.process = subprocess.Popen(
                self._command(port), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.directory
            )
            try:
                self._wait_ready(port, timeout)
            except _PortTaken:
                self.process.wait()
                if self.port is not None or attempt >= 5:  # a restart must keep its port
                    raise RuntimeError(f"port {port} is taken; redis-server cannot start:\n{self.log_tail()}") from None
                continue
            self.port = port
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (``SIGTERM``: Redis flushes the AOF and exits). Idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """``kill -9``: the server dies at once, keeping only what ``appendfsync`` already wrote."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port and directory."""
        self.kill() if kill else self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        log = self.directory / "redis.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def _command(self, port: int) -> list[str]:
        command = [
            self.executable,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",  # the AOF alone: snapshots would only slow the tests down
        ]
        if self.password:
            command += ["--requirepass", self.password]
        return command

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                if "Address already in use" in self.log_tail(5):
                    raise _PortTaken
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.log_tail()}")
            if _answers_ping(port):
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {port} within {timeout} s:\n{self.log_tail()}")


class _PortTaken(Exception):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    """Whether a server on ``port`` is up and loaded: ``PING`` answers ``+PONG`` (or ``-NOAUTH`` when
    it wants a password; ``-LOADING`` while it replays its AOF does not count)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError:
        return False
    return answer.startswith((b"+PONG", b"-NOAUTH"))

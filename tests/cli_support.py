"""Running the real ``flue`` entry point in the CLI tests: as a subprocess, piped or on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

import cli_app
from flue_core import Runtime
from flue_core.http import create_app, serve

TESTS = Path(__file__).parent
FLUE = Path(sys.executable).parent / "flue"
TIMEOUT = 30


def flue_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``flue`` subprocess: this checkout's test app importable, no ``FLUE_*``
    settings leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUE_") and k != "NO_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["FLUE_STORE"] = store_url(tmp_path)
    env.update(extra)
    return env


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flue.db'}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line as JSON (fails if any line is not)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def flue(tmp_path: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run ``flue ARGS`` in ``tmp_path`` with piped stdout and stderr; wait for it to exit."""
    done = subprocess.run(
        [str(FLUE), *args],
        cwd=tmp_path,
        env=env if env is not None else flue_env(tmp_path),
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


async def flue_async(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """:func:`flue` without blocking the event loop (for tests that serve or execute on it meanwhile)."""
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process(
            [str(FLUE), *args], cwd=tmp_path, env=env if env is not None else flue_env(tmp_path), check=False
        )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def flue_on_terminal(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``flue ARGS`` with stdout on a pseudo-terminal (stderr piped); the terminal's raw bytes are
    the result's ``stdout``."""
    controller, terminal = pty.openpty()
    env = dict(env if env is not None else flue_env(tmp_path))
    env.update(COLUMNS="100", LINES="30", TERM="xterm-256color")
    process = subprocess.Popen(
        [str(FLUE), *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE
    )
    os.close(terminal)
    output = b""
    try:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not data:
                break
            output += data
    finally:
        os.close(controller)
    stderr = process.stderr.read().decode() if process.stderr else ""
    code = process.wait(timeout=TIMEOUT)
    return Result(code, output.decode(), stderr)


class Running:
    """A ``flue`` subprocess still going: read its stdout line by line while the test acts."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []

    async def line(self) -> str:
        with anyio.fail_after(TIMEOUT):
            raw = await self._stdout.receive_until(b"\n", 1 << 20)
        self.lines.append(raw.decode())
        return self.lines[-1]

    async def json_line(self) -> dict[str, Any]:
        return json.loads(await self.line())

    async def rest(self) -> list[str]:
        """The remaining stdout lines, once the process closed it."""
        while True:
            try:
                await self.line()
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return self.lines

    async def exit_code(self) -> int:
        with anyio.fail_after(TIMEOUT):
            return await self.process.wait()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        chunks = []
        async for chunk in self.process.stderr:
            chunks.append(chunk)
        return b"".join(chunks).decode()


@asynccontextmanager
async def flue_running(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Running]:
    """``flue ARGS`` started in the background; killed if the block leaves it running."""
    async with await anyio.open_process(
        [str(FLUE), *args], cwd=tmp_path, env=env if env is not None else flue_env(tmp_path)
    ) as process:
        try:
            yield Running(process)
        finally:
            if process.returncode is None:
                process.kill()


def grant_all(request: Any, run: Any) -> bool:
    return True


@asynccontextmanager
async def served(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[Runtime, str]]:
    """``(runtime, url)``: the test app's workflows on ``tmp_path``'s SQLite file, served by uvicorn on
    a free local port, with ``create_app(runtime, **options)`` (run reads granted unless overridden)."""
    options.setdefault("authorize_run_read", grant_all)
    runtime = Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path), sweep_interval=0.1, shutdown_grace=0.5)
    async with runtime, serve(create_app(runtime, **options)) as url:
        yield runtime, url


class CuttingProxy:
    """A TCP proxy in front of a server that can cut every open connection at once, the way a
    restarting load balancer or a flaky network does: clients see their requests fail mid-flight."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.accepted = 0
        self._scopes: set[anyio.CancelScope] = set()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client, await anyio.connect_tcp("127.0.0.1", self.upstream_port) as server:
                    async with anyio.create_task_group() as pipes:
                        pipes.start_soon(_pipe, client, server)
                        pipes.start_soon(_pipe, server, client)
            except (anyio.BrokenResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)

    def cut(self) -> int:
        """Close every connection open now; return how many there were."""
        scopes, self._scopes = set(self._scopes), set()
        for scope in scopes:
            scope.cancel()
        return len(scopes)


async def _pipe(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
    try:
        async for data in source:
            await sink.send(data)
        await sink.send_eof()  # half-close: the other direction may still be talking
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


@asynccontextmanager
async def cutting_proxy(upstream_url: str) -> AsyncIterator[tuple[str, CuttingProxy]]:
    """``(url, proxy)``: a proxy on a free local port in front of ``upstream_url`` (``http://127.0.0.1:P``)."""
    proxy = CuttingProxy(int(upstream_url.rsplit(":", 1)[1]))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, proxy._handle)
        try:
            yield f"http://127.0.0.1:{port}", proxy
        finally:
            tasks.cancel_scope.cancel()

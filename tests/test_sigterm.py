"""SIGTERM (how deploys stop processes) stops every ``flue`` command gracefully, its exit handlers
run: ``serve``, ``worker`` and ``dashboard`` exit 0, a command that waits exits 143; a second
signal during the shutdown grace ends the process at once.

The processes under test serve this module (``test_sigterm:app``, ``test_sigterm:runtime``): with
``EXITED_ENV`` set, it registers an exit handler that writes that file.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from cli_support import FLUE, flue_env, store_url
from flue_core import RunContext, Runtime, workflow, workflows
from flue_core.cli.exits import Exit
from flue_core.http import create_app
from flue_node_like import LocalTarget

EXITED_ENV = "SIGTERM_TEST_EXITED"

if os.environ.get(EXITED_ENV):  # in a process under test: tell the test its exit handlers ran
    atexit.register(Path(os.environ[EXITED_ENV]).write_text, "exit handlers ran")


@workflow(name="sigterm-hold", http=True)
async def hold(ctx: RunContext) -> str:
    Path("holding").write_text(ctx.run_id)  # in the process's working directory: the test's tmp_path
    await anyio.sleep(3600)
    return "held"


#: Its runs get an hour of grace: only a second signal ends a process that has one running.
runtime = Runtime([hold], target=LocalTarget(shutdown_grace=3600))
app = create_app(runtime, open_runtime=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def exits_within(process: subprocess.Popen, seconds: float) -> tuple[int, float]:
    """The process's exit code and the seconds it took (it is killed, and the test fails, past ``seconds``)."""
    began = time.monotonic()
    try:
        code = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the process was still running {seconds} s after the signal")
    return code, time.monotonic() - began


def serving(port: int) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/runs/nothing", timeout=1)
        except httpx.TransportError:
            return False
        return True

    return answers


@contextmanager
def flue(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``flue ARGS`` in ``tmp_path`` on its store, stdout and stderr to files there; killed at the end."""
    env = flue_env(tmp_path, **{EXITED_ENV: str(tmp_path / "exited")})
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        process = subprocess.Popen([str(FLUE), *args], cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def started(tmp_path: Path, command: str) -> tuple[list[str], Callable[[], bool]]:
    """The arguments of a long-running ``command`` and how to tell it is under way."""
    port = free_port()
    if command == "serve":
        return ["serve", "test_sigterm:app", "--port", str(port), "--log-level", "warning"], serving(port)
    if command == "dashboard":
        return ["dashboard", "test_sigterm:runtime", "--port", str(port)], lambda: "http" in (tmp_path / "stdout").read_text()
    return ["worker", "test_sigterm:runtime"], lambda: "executing" in (tmp_path / "stderr").read_text()


def statuses(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "flue.db") as conn:
        return [status for (status,) in conn.execute("SELECT status FROM flue_runs")]


async def admit_to_the_pool(tmp_path: Path) -> None:
    async with Runtime([hold], target=LocalTarget(store_url(tmp_path), execute=False)):
        await workflows.start(hold)


@pytest.mark.parametrize("command", ["serve", "worker", "dashboard"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_long_running_command_with_exit_0_and_its_exit_handlers_run(tmp_path, command, signum):
    args, ready = started(tmp_path, command)
    with flue(tmp_path, *args) as process:
        wait_until(ready, f"flue {command} to be under way")
        process.send_signal(signum)
        code, _ = exits_within(process, 15)
    assert code == Exit.COMPLETED, (tmp_path / "stderr").read_text()
    assert (tmp_path / "exited").read_text() == "exit handlers ran"


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_cuts_the_shutdown_grace_short(tmp_path, command, second):
    args, ready = started(tmp_path, command)
    with flue(tmp_path, *args) as process:
        wait_until(ready, f"flue {command} to be under way")
        if command == "serve":  # the app's own runtime executes what it admits
            port = args[args.index("--port") + 1]
            assert httpx.post(f"http://127.0.0.1:{port}/workflows/sigterm-hold").status_code == 202
        else:  # the worker takes it from the ready pool
            anyio.run(admit_to_the_pool, tmp_path)
        wait_until((tmp_path / "holding").exists, "the run to be executing")
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.poll() is None, "the first signal gives the running run its grace (an hour)"
        process.send_signal(second)
        code, seconds = exits_within(process, 10)
    stderr = (tmp_path / "stderr").read_text()
    assert code == Exit.COMPLETED, stderr
    assert seconds < 3
    assert (tmp_path / "exited").read_text() == "exit handlers ran"
    assert statuses(tmp_path) == ["queued"]  # handed back for another process to resume
    assert "Traceback" not in stderr


def test_sigterm_on_a_local_start_cancels_its_run_and_exits_143_with_its_exit_handlers_run(tmp_path):
    with flue(tmp_path, "start", "sigterm-hold", "--app", "test_sigterm:runtime") as process:
        wait_until((tmp_path / "holding").exists, "the run to be executing")
        process.send_signal(signal.SIGTERM)
        code, _ = exits_within(process, 15)
    assert code == Exit.TERMINATED == 143, (tmp_path / "stderr").read_text()
    assert (tmp_path / "exited").read_text() == "exit handlers ran"
    assert statuses(tmp_path) == ["cancelled"]

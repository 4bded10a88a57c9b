"""Interrupting a program with an open runtime (Ctrl-C, SIGINT, a host's own cancellation) ends it
promptly, closes the store (no connection thread keeps the interpreter alive) and leaves no run running:
a run cut short is handed back, queued for the next process to resume (an interruption is no failure).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

import interrupt_app
from flue_core import RunStatus, Runtime, runs, workflows

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scheduler.py"


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT run_id, status FROM flue_runs").fetchall())


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def exits_within(child: subprocess.Popen, seconds: float) -> float:
    """Seconds the child took to exit (it is killed, and the test fails, past ``seconds``)."""
    began = time.monotonic()
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        pytest.fail(f"the process was still running {seconds} s after it was interrupted")
    return time.monotonic() - began


def interrupted_app(tmp_path: Path, host: str, run_seconds: float, grace: float) -> tuple[subprocess.Popen, Path, str]:
    """interrupt_app in a child process, once its run is executing: ``(child, db, run_id)``."""
    db, ready = tmp_path / "flue.db", tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, interrupt_app.__file__, str(db), str(ready), host, str(run_seconds), str(grace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(ready.exists, "the run to start")
        wait_until(lambda: ready.read_text() != "", "the run id")
        run_id = ready.read_text()
        wait_until(lambda: statuses(db).get(run_id) == "running", "the run to be stored as running")
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child, db, run_id


@pytest.mark.parametrize("host", ["async", "thread"])
def test_sigint_lets_a_run_finish_within_the_grace_then_ends_the_process(tmp_path, host):
    child, db, run_id = interrupted_app(tmp_path, host, run_seconds=0.5, grace=10)
    child.send_signal(signal.SIGINT)
    assert exits_within(child, 5) < 3
    assert statuses(db)[run_id] == "completed"
    assert "interrupted" in child.stdout.read()


@pytest.mark.parametrize("host", ["async", "thread"])
def test_sigint_hands_back_a_run_still_going_after_the_grace_and_ends_the_process(tmp_path, host):
    child, db, run_id = interrupted_app(tmp_path, host, run_seconds=3600, grace=0.2)
    child.send_signal(signal.SIGINT)
    assert exits_within(child, 5) < 2
    assert statuses(db)[run_id] == "queued"  # handed back, not left running


def test_a_second_sigint_cuts_the_grace_short_and_still_closes_cleanly(tmp_path):
    child, db, run_id = interrupted_app(tmp_path, "async", run_seconds=3600, grace=3600)
    child.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert child.poll() is None, "the first Ctrl-C gives running runs their grace period"
    child.send_signal(signal.SIGINT)
    assert exits_within(child, 5) < 2
    assert statuses(db)[run_id] == "queued"


def test_ctrl_c_on_the_example_exits_once_its_run_is_done_and_leaves_no_run_running(tmp_path):
    env = {**os.environ, "FLUE_STORE": f"sqlite:///{tmp_path / 'flue.db'}", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--every", "0.3"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        steps = 0
        assert child.stdout is not None
        while steps < 4:  # mid-way through the second run: one step done, more to come
            line = child.stdout.readline()
            assert line, "the example stopped by itself"
            steps += " step " in line
    except BaseException:
        child.kill()
        child.wait()
        raise
    child.send_signal(signal.SIGINT)
    # The run under way has two 0.2 s steps left and finishes; nothing waits out the 10 s grace.
    assert exits_within(child, 5) < 2.5
    found = statuses(tmp_path / "flue.db")
    assert found and "running" not in found.values()


def connection_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "connection_worker" in t.name]


@pytest.mark.parametrize("how", ["asyncio-task-cancel", "anyio-cancel-scope"])
async def test_a_runtime_cancelled_by_its_host_closes_its_store_and_hands_back_its_runs(tmp_path, how):
    """A host's own cancellation: asyncio's ``task.cancel()`` (what ``asyncio.run`` does on Ctrl-C,
    and ``asyncio.wait_for`` on a timeout), delivered at every await, or an anyio cancel scope."""
    ready = tmp_path / "ready"
    before = connection_threads()
    runtime = interrupt_app.runtime(str(tmp_path / "flue.db"), grace=0.1)
    started: list[str] = []

    async def host() -> None:
        async with runtime:
            started.append((await workflows.start(interrupt_app.sleeper, input={"ready": str(ready), "seconds": 3600})).run_id)
            await anyio.sleep_forever()

    if how == "asyncio-task-cancel":
        task = asyncio.get_running_loop().create_task(host())
        while not ready.exists():
            await anyio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(host)
                while not ready.exists():
                    await anyio.sleep(0.01)
                scope.cancel()
    for thread in set(connection_threads()) - set(before):
        thread.join(timeout=2)  # the store's close returns as its thread is leaving: let it leave
        assert not thread.is_alive(), "the store's connection thread was left running"
    async with Runtime([interrupt_app.sleeper], store=f"sqlite:///{tmp_path / 'flue.db'}", execute=False):
        record = await runs.get(started[0])
        interrupted = [event.data async for event in runs.events(started[0]) if event.type == "run_interrupted"]
    assert record is not None and record.status == RunStatus.QUEUED and record.recoveries == 1
    assert [(data["action"], data["reason"]) for data in interrupted] == [("resume", "stopped")]

"""Is a worker's process alive? Real processes: running, killed and reaped, killed and not reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import crash_app
from flue_core import RunStatus, Runtime, runs
from flue_core.store import WorkerInfo
from flue_node_like.liveness import HOST, is_dead, process_exited, process_started

pytestmark = pytest.mark.anyio


def worker_of(pid: int) -> WorkerInfo:
    return WorkerInfo("wkr_test", HOST, pid, process_started(pid), time.time())


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def zombie_of(child: subprocess.Popen) -> None:
    """Kill ``child`` and leave it unreaped (a zombie) until the test waits for it."""
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_exited(child.pid):
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)


def test_a_running_process_is_alive():
    child = sleeper()
    try:
        assert not is_dead(worker_of(child.pid), lease=30)
    finally:
        child.kill()
        child.wait()


def test_a_killed_process_its_parent_has_not_reaped_is_dead():
    child = sleeper()
    worker = worker_of(child.pid)
    try:
        zombie_of(child)
        assert is_dead(worker, lease=30)
    finally:
        child.kill()
        child.wait()


def test_a_killed_and_reaped_process_is_dead():
    child = sleeper()
    worker = worker_of(child.pid)
    child.kill()
    child.wait()
    assert is_dead(worker, lease=30)


def test_a_reused_pid_is_dead():
    child = sleeper()
    try:
        worker = worker_of(child.pid)
        worker.pid_started = "1"  # the pid now belongs to a process started at another time
        assert is_dead(worker, lease=30)
    finally:
        child.kill()
        child.wait()


async def test_runs_of_a_killed_unreaped_worker_are_recovered_at_once(tmp_path: Path):
    db, ready = tmp_path / "flue.db", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, crash_app.__file__, str(db), "crash-once", str(ready)])
    try:
        with anyio.fail_after(30):
            while not ready.exists() or not ready.read_text():
                await anyio.sleep(0.02)
        run_id = ready.read_text()
        zombie_of(child)  # its lease (30 s) is still fresh: only the process check can tell
        async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
            with anyio.fail_after(5):
                record = await runs.wait(run_id)
        assert record.status == RunStatus.FAILED
        assert record.error is not None and record.error.code == "run_interrupted"
    finally:
        child.kill()
        child.wait()

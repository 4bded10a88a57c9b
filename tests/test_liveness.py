"""Is a worker alive? Dead once its lease ran out, on any host; on this one sooner when its process
is gone. Real processes: running, stopped (``SIGSTOP``), killed and reaped, killed and not reaped."""

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


LEASE = 30.0


def worker_of(pid: int, *, host: str = HOST, renewed_ago: float = 0.0) -> WorkerInfo:
    return WorkerInfo("wkr_test", host, pid, process_started(pid), time.time() - renewed_ago)


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def zombie_of(child: subprocess.Popen) -> None:
    """Kill ``child`` and leave it unreaped (a zombie) until the test waits for it."""
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_exited(child.pid):
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)


def test_a_running_process_that_renews_its_lease_is_alive():
    child = sleeper()
    try:
        assert not is_dead(worker_of(child.pid), lease=LEASE)
    finally:
        child.kill()
        child.wait()


def test_a_running_process_whose_lease_ran_out_is_dead():
    child = sleeper()
    try:
        assert is_dead(worker_of(child.pid, renewed_ago=LEASE + 1), lease=LEASE)
    finally:
        child.kill()
        child.wait()


def test_a_stopped_process_is_alive_until_its_lease_runs_out():
    child = sleeper()
    try:
        worker = worker_of(child.pid)
        os.kill(child.pid, signal.SIGSTOP)  # hung: its process is there, its lease is no longer renewed
        assert not is_dead(worker, lease=LEASE)
        assert is_dead(worker, lease=LEASE, now=worker.heartbeat_at + LEASE + 1)
    finally:
        child.kill()
        child.wait()


def test_a_worker_of_this_process_is_dead_only_once_its_lease_ran_out():
    assert not is_dead(worker_of(os.getpid()), lease=LEASE)
    assert is_dead(worker_of(os.getpid(), renewed_ago=LEASE + 1), lease=LEASE)


def test_a_worker_of_another_host_is_judged_by_its_lease_alone():
    child = sleeper()
    pid = child.pid
    child.kill()
    child.wait()  # a pid that is gone here means nothing for a process of another machine
    assert not is_dead(worker_of(pid, host="elsewhere"), lease=LEASE)
    assert is_dead(worker_of(pid, host="elsewhere", renewed_ago=LEASE + 1), lease=LEASE)


def test_a_killed_process_its_parent_has_not_reaped_is_dead():
    child = sleeper()
    worker = worker_of(child.pid)
    try:
        zombie_of(child)
        assert is_dead(worker, lease=LEASE)
    finally:
        child.kill()
        child.wait()


def test_a_killed_and_reaped_process_is_dead():
    child = sleeper()
    worker = worker_of(child.pid)
    child.kill()
    child.wait()
    assert is_dead(worker, lease=LEASE)


def test_a_reused_pid_is_dead():
    child = sleeper()
    try:
        worker = worker_of(child.pid)
        worker.pid_started = "1"  # the pid now belongs to a process started at another time
        assert is_dead(worker, lease=LEASE)
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
            events = [event async for event in runs.events(run_id)]
        assert record.status == RunStatus.COMPLETED
        assert record.result == {"fetched": 1, "attempt": 1}  # the same attempt, its step replayed
        assert [event.data["reason"] for event in events if event.type == "run_interrupted"] == ["died"]
    finally:
        child.kill()
        child.wait()

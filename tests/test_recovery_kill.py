"""A process killed with -9 mid-run: the next process on the same SQLite file recovers the run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import crash_app
import waiting_app
from flue_core import RunStatus, Runtime, runs

pytestmark = pytest.mark.anyio


def stored_events(db: Path, run_id: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM flue_events WHERE run_id = ?", (run_id,)).fetchone()[0]


def start_and_kill(db: Path, workflow: str, tmp_path: Path, events_before_kill: int) -> str:
    """Run crash_app in a child process, wait until its run is under way with ``events_before_kill``
    events stored (events are written without the workflow waiting), then SIGKILL it."""
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, crash_app.__file__, str(db), workflow, str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.poll() is None, "the child exited before its run was under way"
            assert time.monotonic() < deadline, "the child never reported its run under way"
            time.sleep(0.02)
        while stored_events(db, ready.read_text()) < events_before_kill:
            assert time.monotonic() < deadline, "the child's events never reached the database"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    return ready.read_text()


async def test_a_killed_run_without_retries_resumes_with_its_steps_replayed(tmp_path):
    db = tmp_path / "flue.db"
    run_id = start_and_kill(db, "crash-once", tmp_path, events_before_kill=3)  # queued, start, step
    started = time.monotonic()
    async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
        with anyio.fail_after(15):
            assert await runs.result(run_id) == {"fetched": 1, "attempt": 1}
        resumed_after = time.monotonic() - started
        record = await runs.get(run_id)
        events = [e async for e in runs.events(run_id)]
    assert [e.type for e in events] == ["run_queued", "run_start", "step", "run_interrupted", "run_resume", "run_end"]
    assert events[3].data == {"attempt": 1, "action": "resume", "reason": "died", "recoveries": 1}
    assert record.attempt == 1 and record.recoveries == 1
    assert Path(str(db) + crash_app.CALLS_FILE_SUFFIX).read_text() == "fetch\n"  # the step ran once
    assert resumed_after < 5  # same host: the dead process is seen at once, not after the lease


async def test_a_killed_run_with_retries_resumes_without_using_one(tmp_path):
    db = tmp_path / "flue.db"
    run_id = start_and_kill(db, "crash-retry", tmp_path, events_before_kill=3)
    async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
        with anyio.fail_after(15):
            assert await runs.result(run_id) == {"fetched": 1, "attempt": 1}
    assert Path(str(db) + crash_app.CALLS_FILE_SUFFIX).read_text() == "fetch\n"


async def test_with_max_recoveries_0_a_killed_run_without_retries_ends_interrupted(tmp_path):
    db = tmp_path / "flue.db"
    run_id = start_and_kill(db, "crash-legacy", tmp_path, events_before_kill=2)
    async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
        with anyio.fail_after(15):
            record = await runs.wait(run_id)
    assert record.status == RunStatus.FAILED
    assert record.error is not None and record.error.code == "run_interrupted"


async def test_a_step_that_kills_its_process_every_time_fails_after_max_recoveries(tmp_path):
    db = tmp_path / "flue.db"
    ready = tmp_path / "ready"
    first = subprocess.run([sys.executable, crash_app.__file__, str(db), "crash-always", str(ready)], timeout=60)
    assert first.returncode == -signal.SIGKILL
    run_id = ready.read_text()
    for _ in range(2):  # max_recoveries=2: two processes resume it, and its step kills each
        again = subprocess.run([sys.executable, crash_app.__file__, str(db), "--wait", run_id], timeout=60)
        assert again.returncode == -signal.SIGKILL
    async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
        with anyio.fail_after(15):
            record = await runs.wait(run_id)
        events = [e async for e in runs.events(run_id)]
    assert record.status == RunStatus.FAILED and record.error.code == "recovery_limit"
    assert record.recoveries == 2 and record.attempt == 1
    interrupted = [e.data for e in events if e.type == "run_interrupted"]
    assert [(d["action"], d["recoveries"]) for d in interrupted] == [("resume", 1), ("resume", 2), ("fail", 2)]
    assert Path(str(db) + crash_app.CALLS_FILE_SUFFIX).read_text() == "die\ndie\ndie\n"


async def test_nothing_is_recovered_while_the_owner_is_alive(tmp_path):
    db = tmp_path / "flue.db"
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, crash_app.__file__, str(db), "crash-once", str(ready)])
    try:
        with anyio.fail_after(30):
            while not ready.exists():
                await anyio.sleep(0.02)
        run_id = ready.read_text()
        async with Runtime(crash_app.WORKFLOWS, target=crash_app.target(str(db))):
            await anyio.sleep(0.5)  # several recovery sweeps
            record = await runs.get(run_id)
            assert record is not None and record.status == RunStatus.RUNNING and record.attempt == 1
    finally:
        child.kill()
        child.wait(timeout=10)


async def test_sleeping_waiting_and_scheduled_runs_of_a_killed_process_resume_after_a_restart(tmp_path):
    db = tmp_path / "flue.db"
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, waiting_app.__file__, str(db), str(ready)])
    try:
        with anyio.fail_after(30):
            while not ready.exists():
                assert child.poll() is None, "the child exited before its runs were waiting"
                await anyio.sleep(0.02)
        ids = json.loads(ready.read_text())
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    async with Runtime(waiting_app.WORKFLOWS, target=waiting_app.target(str(db))):
        await runs.signal(ids["approval"], "approve", {"ok": True})
        with anyio.fail_after(15):
            assert await runs.result(ids["sleeper"]) == "slept"
            assert await runs.result(ids["approval"]) == {"ok": True}
            assert await runs.result(ids["later"]) == "started later"
        for run_id in ids.values():
            types = [e.type async for e in runs.events(run_id)]
            assert "run_interrupted" not in types and types.count("run_end") == 1
    calls = Path(str(db) + waiting_app.CALLS_FILE_SUFFIX).read_text().splitlines()
    assert sorted(calls) == ["before-signal", "before-sleep"]  # steps before the waits ran once

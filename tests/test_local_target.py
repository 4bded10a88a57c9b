"""The local target: concurrency limit, default store location, SQLite file format and version check."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import anyio
import pytest

from flue_core import RunContext, RunStatus, Runtime, runs, workflow, workflows
from flue_core.errors import StoreUnavailable, UnsupportedSchemaVersion
from flue_core.store import WorkerInfo
from flue_node_like.sqlite_schema import SCHEMA_VERSION
from flue_node_like import LocalTarget, MemoryStore, SqliteStore, liveness

pytestmark = pytest.mark.anyio


running_now = {"count": 0, "peak": 0}


@workflow(name="local-busy")
async def busy(ctx: RunContext) -> None:
    running_now["count"] += 1
    running_now["peak"] = max(running_now["peak"], running_now["count"])
    await anyio.sleep(0.05)
    running_now["count"] -= 1


async def test_no_more_runs_execute_at_once_than_the_concurrency_limit():
    running_now.update(count=0, peak=0)
    async with Runtime([busy], store="memory://", concurrency=2):
        receipts = [await workflows.start(busy) for _ in range(6)]
        for receipt in receipts:
            await runs.wait(receipt.run_id, timeout=5)
    assert running_now["peak"] == 2


async def test_no_more_runs_execute_at_once_than_the_limit_when_admission_claims_them(tmp_path):
    running_now.update(count=0, peak=0)
    async with Runtime([busy], store=f"sqlite:///{tmp_path}/claims.db", concurrency=2):
        receipts = [await workflows.start(busy) for _ in range(6)]
        for receipt in receipts:
            await runs.wait(receipt.run_id, timeout=5)
    assert running_now["peak"] == 2


gate_open = anyio.Event()


@workflow(name="local-gated")
async def gated_run(ctx: RunContext) -> None:
    await gate_open.wait()


async def test_a_run_admitted_while_every_slot_is_busy_stays_queued(tmp_path):
    global gate_open
    gate_open = anyio.Event()
    async with Runtime([gated_run], store=f"sqlite:///{tmp_path}/full.db", concurrency=1):
        first = await workflows.start(gated_run)  # claimed by its admission: the slot was free
        assert (await runs.get(first.run_id)).status == RunStatus.RUNNING
        second = await workflows.start(gated_run)
        await anyio.sleep(0.05)
        record = await runs.get(second.run_id)
        assert record.status == RunStatus.QUEUED and record.attempt == 0 and record.started_at is None
        gate_open.set()
        for receipt in (first, second):
            assert (await runs.wait(receipt.run_id, timeout=5)).status == RunStatus.COMPLETED


async def test_the_default_store_is_a_sqlite_file_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUE_STORE", raising=False)
    async with Runtime([busy]) as runtime:
        assert isinstance(runtime.target.store, SqliteStore)
        await runs.wait((await workflows.start(busy)).run_id, timeout=5)
    database = tmp_path / ".flue" / "flue.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert conn.execute("SELECT status FROM flue_runs").fetchall() == [("completed",)]


async def test_flue_store_chooses_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUE_STORE", f"sqlite:///{tmp_path}/chosen.db")
    async with Runtime([busy]) as runtime:
        assert runtime.target.store.path == tmp_path / "chosen.db"
    assert (tmp_path / "chosen.db").exists()


@pytest.mark.parametrize(("stored", "says"), [(str(SCHEMA_VERSION + 1), "newer"), ("banana", "unrecognised")])
async def test_a_database_of_another_schema_version_is_refused(tmp_path, stored, says):
    database = tmp_path / "old.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO flue_meta VALUES ('schema_version', ?)", (stored,))
    with pytest.raises(UnsupportedSchemaVersion, match=says) as caught:
        async with Runtime([busy], target=LocalTarget(SqliteStore(database))):
            pass
    assert caught.value.details == {"stored_version": stored, "supported_version": SCHEMA_VERSION}


VERSION_1 = """
CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO flue_meta VALUES ('schema_version', '1');
CREATE TABLE flue_runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, input TEXT, key TEXT,
    attempt INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT,
    result TEXT, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, owner TEXT
);
CREATE TABLE flue_events (run_id TEXT NOT NULL, idx INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, idx));
CREATE TABLE flue_steps (run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, name));
CREATE TABLE flue_workers (worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started TEXT, heartbeat_at REAL NOT NULL);
INSERT INTO flue_runs (run_id, workflow, status, created_at, owner) VALUES ('run_old', 'local-busy', 'queued', '2026-01-01T00:00:00.000Z', 'wkr_gone');
INSERT INTO flue_events VALUES ('run_old', 0, '{"runId":"run_old","index":0,"timestamp":"2026-01-01T00:00:00.000Z","type":"run_queued","data":{}}');
"""


async def test_a_database_of_schema_version_1_is_upgraded_and_its_runs_executed(tmp_path):
    database = tmp_path / "v1.db"
    with sqlite3.connect(database) as conn:
        conn.executescript(VERSION_1)
    async with Runtime([busy], target=LocalTarget(SqliteStore(database))):
        record = await runs.wait("run_old", timeout=10)
        assert record.status == RunStatus.COMPLETED
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


async def test_runs_survive_a_restart_on_the_same_file(tmp_path):
    database = tmp_path / "flue.db"
    async with Runtime([busy], target=LocalTarget(SqliteStore(database))):
        run_id = (await workflows.start(busy)).run_id
        await runs.wait(run_id, timeout=5)
    async with Runtime([busy], target=LocalTarget(SqliteStore(database))):
        record = await runs.get(run_id)
        assert record is not None and record.status == RunStatus.COMPLETED
        assert [e.type async for e in runs.events(run_id)] == ["run_queued", "run_start", "run_end"]


async def test_a_cancel_from_another_process_reaches_the_owner(tmp_path):
    gate = anyio.Event()

    @workflow(name="local-wait")
    async def wait(ctx: RunContext) -> None:
        await gate.wait()

    database = tmp_path / "flue.db"
    owner = Runtime([wait], target=LocalTarget(SqliteStore(database), sweep_interval=0.05))
    other = Runtime([wait], target=LocalTarget(SqliteStore(database), sweep_interval=0.05))
    async with owner, other:
        receipt = await workflows.start(wait, runtime=owner)
        with anyio.fail_after(5):
            while (await runs.get(receipt.run_id, runtime=owner)).status != RunStatus.RUNNING:
                await anyio.sleep(0.01)
        record = await runs.cancel(receipt.run_id, runtime=other)
        assert record.status == RunStatus.CANCELLED


async def test_a_runtime_closed_by_the_hosts_cancellation_still_shuts_down_cleanly(tmp_path):
    gate = anyio.Event()

    @workflow(name="local-stuck")
    async def stuck(ctx: RunContext) -> None:
        await gate.wait()

    database = tmp_path / "flue.db"
    with anyio.move_on_after(0.3) as host:
        async with Runtime([stuck], target=LocalTarget(SqliteStore(database), shutdown_grace=0.1)):
            run_id = (await workflows.start(stuck)).run_id
            await anyio.sleep(5)
    assert host.cancelled_caught
    gate.set()  # the next process finds the run handed back, and resumes it
    async with Runtime([stuck], target=LocalTarget(SqliteStore(database), sweep_interval=0.05)):
        record = await runs.wait(run_id, timeout=5)
        assert record.status == RunStatus.COMPLETED and record.attempt == 1 and record.recoveries == 1


async def test_a_target_that_does_not_adopt_leaves_orphaned_runs_alone(tmp_path):
    from flue_core.testing.recovery import leave_behind

    database = tmp_path / "flue.db"
    await leave_behind(LocalTarget(SqliteStore(database)), "run_orphan", "local-busy", None, started=False)
    async with Runtime([busy], target=LocalTarget(SqliteStore(database), adopt=False, sweep_interval=0.05)):
        await anyio.sleep(0.3)
        assert (await runs.get("run_orphan")).status == RunStatus.QUEUED
    async with Runtime([busy], target=LocalTarget(SqliteStore(database))):
        assert (await runs.wait("run_orphan", timeout=5)).status == RunStatus.COMPLETED


class _AdoptFails(MemoryStore):
    closed = False

    async def adopt(self, dead, owner, workflows):
        raise StoreUnavailable("database is locked")

    async def close(self) -> None:
        self.closed = True
        await super().close()


async def test_a_target_that_fails_to_open_raises_that_error_and_leaves_nothing_open():
    store = _AdoptFails()
    with pytest.raises(StoreUnavailable, match="locked"):
        async with Runtime([busy], target=LocalTarget(store)):
            pass
    assert store.closed


def test_on_this_host_a_process_that_exited_is_dead_at_once_and_a_live_one_once_its_lease_ran_out():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        renewing = WorkerInfo("wkr_renewing", liveness.HOST, child.pid, liveness.process_started(child.pid), time.time())
        assert not liveness.is_dead(renewing, lease=30.0)
        stalled = WorkerInfo("wkr_stalled", liveness.HOST, child.pid, liveness.process_started(child.pid), 0.0)
        assert liveness.is_dead(stalled, lease=1.0)  # hung: alive, but it stopped renewing its lease
        child.kill()
        child.wait(timeout=10)
        assert liveness.is_dead(renewing, lease=30.0)  # exited: dead without waiting for the lease
    finally:
        child.kill()
    elsewhere = WorkerInfo("wkr_far", "another-host", 1, None, time.time())
    assert not liveness.is_dead(elsewhere, lease=30.0)
    assert liveness.is_dead(elsewhere, lease=30.0, now=time.time() + 31)


@workflow(name="local-staggered")
async def staggered(ctx: RunContext, input: dict) -> None:
    await anyio.sleep(input["n"] % 4 * 0.01)  # runs taken together end one after another


class _SlowTakes(MemoryStore):
    """Runs executing here end while the worker's take from the pool is under way."""

    async def take_ready(self, owner, workflows, limit, *, only=None):  # type: ignore[no-untyped-def]
        taken = await super().take_ready(owner, workflows, limit, only=only)
        await anyio.sleep(0.03)
        return taken


async def test_a_worker_keeps_taking_from_the_pool_while_runs_end_during_its_takes():
    name = f"memory://slow-takes-{time.monotonic_ns()}"
    async with Runtime([staggered], store=name, execute=False) as web:
        receipts = [await workflows.start(staggered, input={"n": n}, runtime=web) for n in range(60)]
        # No sweep comes to the rescue: only the worker's own bookkeeping may take the next runs.
        async with Runtime([staggered], target=LocalTarget(_SlowTakes(name), concurrency=4, sweep_interval=60)):
            with anyio.fail_after(5):
                for receipt in receipts:
                    await runs.wait(receipt.run_id, runtime=web)

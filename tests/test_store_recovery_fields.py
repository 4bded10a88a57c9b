"""The built-in stores keep recoveries, re-runs and step order: ``requeue(interrupted=)``, ``rerun_of``,
steps taken over at admission, and a version 2 SQLite file upgraded in place."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from flue_core.errors import RunIdConflict, UnsupportedSchemaVersion
from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent, NewRun, RunQuery, RunStore
from flue_node_like import MemoryStore, SqliteStore
from flue_node_like.sqlite_schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

START = utc_now()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path) -> AsyncIterator[RunStore]:
    opened = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "flue.db")
    await opened.open(lambda run_ids: None)
    try:
        yield opened
    finally:
        await opened.close()


def new_run(
    run_id: str,
    *,
    owner: str | None = "wkr_a",
    minutes: int = 0,
    key: str | None = None,
    rerun_of: str | None = None,
    steps: tuple[tuple[str, str], ...] = (),
) -> NewRun:
    created = START + timedelta(minutes=minutes)
    first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": key}, created)
    return NewRun(run_id, "w", None, key, created, owner, first, rerun_of=rerun_of, steps=steps)


async def test_a_rerun_keeps_what_it_re_runs_through_admit_get_and_list(store):
    admission = await store.admit(new_run("run_b", rerun_of="run_a"))
    assert admission.record.rerun_of == "run_a" and admission.record.recoveries == 0
    stored = await store.get("run_b")
    assert stored is not None and stored.rerun_of == "run_a" and stored.recoveries == 0
    assert [(r.run_id, r.rerun_of) for r in await store.list(RunQuery())] == [("run_b", "run_a")]


async def test_an_interrupted_run_continues_its_attempt_and_counts_a_recovery(store):
    await store.admit(new_run("run_i"))
    first = await store.claim("run_i", "wkr_a")
    assert first is not None and first.record.attempt == 1 and not first.resumed
    requeued = await store.requeue("run_i", "wkr_a", interrupted=True)
    assert requeued is not None and requeued.status == RunStatus.QUEUED and requeued.recoveries == 1
    again = await store.claim("run_i", "wkr_a")
    assert again is not None and again.resumed
    assert (again.record.attempt, again.record.recoveries) == (1, 1)
    assert (await store.get("run_i")).recoveries == 1


async def test_a_run_handed_back_without_an_interruption_starts_a_new_attempt(store):
    await store.admit(new_run("run_r"))
    await store.claim("run_r", "wkr_a")
    await store.requeue("run_r", "wkr_a", interrupted=True)
    await store.claim("run_r", "wkr_a")
    requeued = await store.requeue("run_r", "wkr_a")
    assert requeued is not None and requeued.recoveries == 1
    again = await store.claim("run_r", "wkr_a")
    assert again is not None and not again.resumed
    assert (again.record.attempt, again.record.recoveries) == (2, 1)


async def test_steps_taken_over_at_admission_are_the_runs_own_in_their_order(store):
    steps = (("zeta", '"z"'), ("alpha", '"a"'), ("mid", "3"))
    await store.admit(new_run("run_s", rerun_of="run_old", steps=steps))
    await store.save_step("run_s", "beta", '"b"')
    await store.save_step("run_s", "alpha", '"ignored"')  # the first saved stays
    await store.save_step("run_s", "aaa", "1")
    assert list((await store.load_steps("run_s")).items()) == [*steps, ("beta", '"b"'), ("aaa", "1")]


async def test_steps_taken_over_at_a_claiming_admission_are_stored(store):
    admission, attempt = await store.admit_claimed(new_run("run_c", steps=(("b", "2"), ("a", "1"))))
    assert admission.created and attempt is not None
    assert list((await store.load_steps("run_c")).items()) == [("b", "2"), ("a", "1")]


async def test_an_admission_that_creates_nothing_stores_no_steps(store):
    await store.admit(new_run("run_k", key="once"))
    again = await store.admit(new_run("run_k2", key="once", steps=(("x", "1"),)))
    assert not again.created and again.record.run_id == "run_k"
    with pytest.raises(RunIdConflict):
        await store.admit(new_run("run_k", steps=(("y", "1"),)))
    assert await store.load_steps("run_k") == {}
    assert await store.load_steps("run_k2") == {}


async def test_list_keeps_the_reruns_of_one_run_page_by_page(store):
    await store.admit(new_run("run_orig", minutes=0))
    for n in range(5):
        await store.admit(new_run(f"run_re{n}", minutes=n + 1, rerun_of="run_orig"))
    await store.admit(new_run("run_other", minutes=9, rerun_of="run_else"))
    first = await store.list(RunQuery(rerun_of="run_orig", limit=3))
    assert [r.run_id for r in first] == ["run_re4", "run_re3", "run_re2"]
    cursor = (first[-1].created_at, first[-1].run_id)
    rest = await store.list(RunQuery(rerun_of="run_orig", limit=3, after=cursor))
    assert [r.run_id for r in rest] == ["run_re1", "run_re0"]


# What a version 2 store wrote: its runs and steps tables as they were, and one run mid-way.
VERSION_2 = """
CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO flue_meta VALUES ('schema_version', '2');
CREATE TABLE flue_runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, input TEXT, key TEXT,
    attempt INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT,
    result TEXT, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, owner TEXT, parent_run_id TEXT,
    wake_at TEXT, waiting_for TEXT, carrier TEXT, ready_at TEXT, resume INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX flue_runs_key ON flue_runs (workflow, key) WHERE key IS NOT NULL;
CREATE INDEX flue_runs_order ON flue_runs (created_at, run_id);
CREATE INDEX flue_runs_workflow_order ON flue_runs (workflow, created_at, run_id);
CREATE INDEX flue_runs_status_order ON flue_runs (status, created_at, run_id);
CREATE INDEX flue_runs_ready ON flue_runs (ready_at, run_id) WHERE status = 'queued' AND owner IS NULL;
CREATE INDEX flue_runs_due ON flue_runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX flue_runs_parent ON flue_runs (parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX flue_runs_ended ON flue_runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX flue_runs_busy ON flue_runs (workflow) WHERE owner IS NOT NULL AND status IN ('queued', 'running');
CREATE TABLE flue_events (run_id TEXT NOT NULL, idx INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, idx)) WITHOUT ROWID;
CREATE TABLE flue_steps (run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, name)) WITHOUT ROWID;
CREATE TABLE flue_workers (worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started TEXT, heartbeat_at REAL NOT NULL);
CREATE TABLE flue_signals (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, signal_id TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
    key TEXT, sent_at TEXT NOT NULL, announced INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE flue_schedules (name TEXT PRIMARY KEY, definition TEXT NOT NULL, last_tick TEXT);
INSERT INTO flue_runs (run_id, workflow, status, attempt, created_at, started_at, owner, ready_at)
    VALUES ('run_v2', 'w', 'running', 2, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', 'wkr_a', '2026-01-01T00:00:00.000Z');
INSERT INTO flue_events VALUES ('run_v2', 0, '{"runId":"run_v2","index":0,"timestamp":"2026-01-01T00:00:00.000Z","type":"run_queued","data":{}}');
INSERT INTO flue_steps VALUES ('run_v2', 'second', '2');
INSERT INTO flue_steps VALUES ('run_v2', 'first', '1');
"""


async def test_a_version_2_database_is_upgraded_in_place_and_keeps_its_runs(tmp_path):
    database = tmp_path / "v2.db"
    with sqlite3.connect(database) as conn:
        conn.executescript(VERSION_2)
    store = SqliteStore(database)
    await store.open(lambda run_ids: None)
    try:
        kept = await store.get("run_v2")
        assert kept is not None and (kept.status, kept.attempt, kept.recoveries, kept.rerun_of) == (
            RunStatus.RUNNING,
            2,
            0,
            None,
        )
        await store.save_step("run_v2", "third", "3")
        assert list(await store.load_steps("run_v2")) == ["first", "second", "third"]
        await store.requeue("run_v2", "wkr_a", interrupted=True)
        resumed = await store.claim("run_v2", "wkr_a")
        assert resumed is not None and resumed.resumed and (resumed.record.attempt, resumed.record.recoveries) == (2, 1)
        await store.admit(new_run("run_again", rerun_of="run_v2", steps=(("first", "1"),)))
        assert [r.run_id for r in await store.list(RunQuery(rerun_of="run_v2"))] == ["run_again"]
    finally:
        await store.close()
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


async def test_a_database_of_a_newer_version_is_still_refused(tmp_path):
    database = tmp_path / "newer.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO flue_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(UnsupportedSchemaVersion, match="newer"):
        await SqliteStore(database).open(lambda run_ids: None)

"""Flow control in the SQLite store: the new record fields and filters, take_ready under per-key
concurrency and rate limits in priority order, claim's per-key recheck, debounce folding, limits that
hold across two connections to one file, and a version 3 file upgraded in place."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import anyio
import pytest

from flue_core.flow.limits import NO_LIMITS, Limits
from flue_core.models import RunStatus, format_timestamp, utc_now
from flue_core.store import READY, NewEvent, NewRun, Outcome, RunQuery
from flue_node_like import SqliteStore
from flue_node_like.sqlite_schema import SCHEMA_VERSION
from test_store_recovery_fields import VERSION_2

pytestmark = pytest.mark.anyio

START = utc_now() - timedelta(hours=1)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SqliteStore]:
    async with _opened(SqliteStore(tmp_path / "flue.db")) as opened:
        yield opened


class _opened:
    def __init__(self, store: SqliteStore, heard: list[str] | None = None) -> None:
        self.store, self.heard = store, heard

    async def __aenter__(self) -> SqliteStore:
        await self.store.open(lambda ids: self.heard.extend(ids) if self.heard is not None else None)
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


def new_run(
    run_id: str,
    *,
    workflow: str = "w",
    seconds: float = 0,
    priority: int = 0,
    concurrency_key: str | None = None,
    rate_key: str | None = None,
    debounce_key: str | None = None,
    start_at: datetime | None = None,
    key: str | None = None,
    input: object = None,
) -> NewRun:
    created = START + timedelta(seconds=seconds)
    first = NewEvent(0, "run_queued", {"workflow": workflow}, created)
    return NewRun(
        run_id, workflow, input, key, created, None, first, start_at=start_at, priority=priority,
        concurrency_key=concurrency_key, rate_key=rate_key, debounce_key=debounce_key,
    )  # fmt: skip


def ids(taken) -> list[str]:
    return [r.run_id for r in taken.records]


async def _end(store: SqliteStore, run_id: str) -> None:
    await store.finish(run_id, Outcome(RunStatus.COMPLETED, utc_now()))


async def _admit_all(store: SqliteStore, *runs: NewRun) -> None:
    for run in runs:
        await store.admit(run)


# -- records and queries -----------------------------------------------------------------------------


async def test_the_flow_fields_are_kept_by_admit_get_list_and_take(store):
    admitted = await store.admit(new_run("run_a", priority=7, concurrency_key="c", rate_key="r"))
    fields = ("priority", "concurrency_key", "rate_key", "debounce_key")
    assert [getattr(admitted.record, f) for f in fields] == [7, "c", "r", None]
    assert [getattr(await store.get("run_a"), f) for f in fields] == [7, "c", "r", None]
    assert [getattr((await store.list(RunQuery()))[0], f) for f in fields] == [7, "c", "r", None]
    (taken,) = (await store.take_ready("wkr_a", {"w": NO_LIMITS}, 5)).records
    assert [getattr(taken, f) for f in fields] == [7, "c", "r", None]
    claimed = await store.claim("run_a", "wkr_a")
    assert claimed is not None and claimed.record.concurrency_key == "c"


async def test_list_filters_by_concurrency_key_rate_key_and_start_time(store):
    await _admit_all(
        store,
        new_run("run_a", seconds=1, concurrency_key="c1", rate_key="r1"),
        new_run("run_b", seconds=2, concurrency_key="c2", rate_key="r1"),
        new_run("run_c", seconds=3, concurrency_key="c1"),
    )
    assert [r.run_id for r in await store.list(RunQuery(concurrency_key="c1"))] == ["run_c", "run_a"]
    assert [r.run_id for r in await store.list(RunQuery(rate_key="r1"))] == ["run_b", "run_a"]
    before = utc_now() - timedelta(seconds=1)
    await store.take_ready("wkr_a", {"w": NO_LIMITS}, 1)
    await store.claim("run_a", "wkr_a")
    assert [r.run_id for r in await store.list(RunQuery(started_after=before))] == ["run_a"]
    assert await store.list(RunQuery(started_after=utc_now() + timedelta(seconds=1))) == []


# -- take_ready -----------------------------------------------------------------------------------------


async def test_take_ready_takes_higher_priority_first_then_oldest(store):
    await _admit_all(
        store,
        new_run("run_old", seconds=1),
        new_run("run_urgent", seconds=3, priority=50),
        new_run("run_low", seconds=0, priority=-5),
        new_run("run_new", seconds=2),
    )
    assert ids(await store.take_ready("wkr_a", {"w": NO_LIMITS}, 10)) == ["run_urgent", "run_old", "run_new", "run_low"]


async def test_concurrency_is_counted_per_key_with_keyless_runs_in_one_bucket(store):
    await _admit_all(
        store,
        *(new_run(f"run_a{n}", seconds=n, concurrency_key="a") for n in range(3)),
        *(new_run(f"run_n{n}", seconds=10 + n) for n in range(3)),
        new_run("run_b0", seconds=20, concurrency_key="b"),
    )
    taken = await store.take_ready("wkr_a", {"w": Limits(concurrency=2)}, 10)
    assert ids(taken) == ["run_a0", "run_a1", "run_n0", "run_n1", "run_b0"] and taken.retry_at is None
    assert ids(await store.take_ready("wkr_b", {"w": Limits(concurrency=2)}, 10)) == []
    await store.claim("run_a0", "wkr_a")
    await _end(store, "run_a0")
    assert ids(await store.take_ready("wkr_b", {"w": Limits(concurrency=2)}, 10)) == ["run_a2"]


async def test_a_full_bucket_at_the_head_does_not_block_the_runs_behind_it(store):
    await _admit_all(store, *(new_run(f"run_h{n}", seconds=n, priority=9, concurrency_key="hot") for n in range(5)))
    await _admit_all(store, new_run("run_cold", seconds=0, concurrency_key="cold"), new_run("run_other", workflow="v"))
    limits = {"w": Limits(concurrency=1), "v": NO_LIMITS}
    assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_h0", "run_cold", "run_other"]
    assert ids(await store.take_ready("wkr_a", limits, 10)) == []


async def test_a_take_skips_a_saturated_key_of_ten_thousand_runs_without_fetching_them(store, tmp_path):
    await store.close()
    with sqlite3.connect(tmp_path / "flue.db") as conn:  # the pool, written at once
        conn.executemany(
            "INSERT INTO flue_runs (run_id, workflow, status, created_at, ready_at, priority, concurrency_key)"
            " VALUES (?, 'w', 'queued', ?, ?, 1, 'hot')",
            [(f"run_{n:05}", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z") for n in range(10_000)],
        )
        conn.execute(
            "INSERT INTO flue_runs (run_id, workflow, status, created_at, ready_at, owner, concurrency_key)"
            " VALUES ('run_busy', 'w', 'running', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 'wkr_z', 'hot')"
        )
        conn.execute(
            "INSERT INTO flue_runs (run_id, workflow, status, created_at, ready_at, concurrency_key)"
            " VALUES ('run_behind', 'w', 'queued', '2026-01-02T00:00:00.000Z', '2026-01-02T00:00:00.000Z', 'cold')"
        )
    async with _opened(SqliteStore(tmp_path / "flue.db")) as reopened:
        began = time.perf_counter()
        taken = await reopened.take_ready("wkr_a", {"w": Limits(concurrency=1)}, 10)
        elapsed = time.perf_counter() - began
    assert ids(taken) == ["run_behind"]
    assert elapsed < 0.25, elapsed  # the 10,000 are passed over inside the pool's index


async def test_the_pool_query_walks_the_pool_index_in_take_order(store):
    from flue_node_like.sqlite_flow import _Counts, _pool_query

    def plan(conn: sqlite3.Connection) -> str:
        counts = _Counts(conn, {"w": Limits(concurrency=1)}, utc_now())
        sql, params = _pool_query(["w"], None, counts)
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql} ORDER BY priority DESC, ready_at, run_id LIMIT 5", params)
        return " ".join(row[-1] for row in rows)

    described = await store._in_thread(plan)
    assert "INDEX flue_runs_pool" in described and "TEMP B-TREE" not in described


async def test_a_rate_limit_counts_first_starts_and_taken_runs_per_rate_key(store):
    await _admit_all(
        store,
        *(new_run(f"run_r{n}", seconds=n, rate_key="r") for n in range(3)),
        new_run("run_s", seconds=5, rate_key="s"),
    )
    limits = {"w": Limits(rate=2, per=60)}
    before = utc_now()
    taken = await store.take_ready("wkr_a", limits, 10)
    assert ids(taken) == ["run_r0", "run_r1", "run_s"]
    window = timedelta(seconds=60)
    assert taken.retry_at is not None and before + window <= taken.retry_at <= utc_now() + window
    for run_id in ids(taken):  # started now: they count by their start, no longer as taken
        await store.claim(run_id, "wkr_a")
        await _end(store, run_id)
    again = await store.take_ready("wkr_b", limits, 10)
    assert ids(again) == [] and again.retry_at is not None


async def test_a_rate_limit_has_room_again_once_a_start_leaves_the_window(store):
    await _admit_all(store, new_run("run_1", rate_key="r"), new_run("run_2", seconds=1, rate_key="r"))
    limits = {"w": Limits(rate=1, per=0.3)}
    assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_1"]
    await store.claim("run_1", "wkr_a")
    held = await store.take_ready("wkr_a", limits, 10)
    assert ids(held) == [] and held.retry_at is not None and held.retry_at <= utc_now() + timedelta(seconds=0.3)
    await anyio.sleep(max(0.0, (held.retry_at - utc_now()).total_seconds()) + 0.01)
    assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_2"]


async def test_a_resumed_run_is_not_held_by_the_rate_limit(store):
    await _admit_all(store, new_run("run_1"), new_run("run_2", seconds=1))
    limits = {"w": Limits(rate=1, per=60)}
    assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_1"]
    await store.claim("run_1", "wkr_a")
    await store.requeue("run_1", None, interrupted=True)  # back in the pool, started already
    taken = await store.take_ready("wkr_a", limits, 10)
    assert ids(taken) == ["run_1"] and taken.retry_at is not None  # run_2 is still held


async def test_no_retry_time_when_nothing_is_left_for_the_rate_limit(store):
    await _admit_all(store, new_run("run_1"), new_run("run_2", seconds=1))
    taken = await store.take_ready("wkr_a", {"w": Limits(rate=2, per=60)}, 10)
    assert ids(taken) == ["run_1", "run_2"] and taken.retry_at is None


async def test_no_retry_time_for_runs_held_by_their_concurrency_as_well(store):
    await _admit_all(store, new_run("run_1", concurrency_key="c"), new_run("run_2", seconds=1, concurrency_key="c"))
    taken = await store.take_ready("wkr_a", {"w": Limits(concurrency=1, rate=1, per=60)}, 10)
    assert ids(taken) == ["run_1"] and taken.retry_at is None


async def test_the_retry_time_is_that_of_the_earliest_bucket_holding_a_run(store):
    await _admit_all(store, new_run("run_x1", rate_key="x"), new_run("run_y1", seconds=1, rate_key="y"))
    limits = {"w": Limits(rate=1, per=60)}
    assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_x1", "run_y1"]
    await store.claim("run_x1", "wkr_a")
    await anyio.sleep(0.05)
    await store.claim("run_y1", "wkr_a")
    await store.admit(new_run("run_y2", seconds=2, rate_key="y"))  # only y holds a run back
    held = await store.take_ready("wkr_a", limits, 10)
    y_started = (await store.get("run_y1")).started_at
    assert ids(held) == [] and held.retry_at == y_started + timedelta(seconds=60)


async def test_a_bucket_over_its_rate_has_room_once_enough_starts_have_left_the_window(store):
    await _admit_all(store, *(new_run(f"run_{n}", seconds=n) for n in range(4)))
    for run_id in ids(await store.take_ready("wkr_a", {"w": NO_LIMITS}, 3)):  # three starts, no limit then
        await store.claim(run_id, "wkr_a")
        await anyio.sleep(0.01)
    held = await store.take_ready("wkr_a", {"w": Limits(rate=2, per=60)}, 10)
    second = (await store.get("run_1")).started_at
    assert ids(held) == [] and held.retry_at == second + timedelta(seconds=60)


async def test_only_takes_just_the_named_runs(store):
    await _admit_all(store, new_run("run_1"), new_run("run_2", seconds=1), new_run("run_3", seconds=2, priority=3))
    taken = await store.take_ready("wkr_a", {"w": Limits(concurrency=5)}, 10, only=["run_3", "run_2"])
    assert ids(taken) == ["run_3", "run_2"]
    assert ids(await store.take_ready("wkr_a", {"w": NO_LIMITS}, 10, only=[])) == []


async def test_claim_rechecks_the_limit_within_the_runs_own_key(store):
    await _admit_all(store, new_run("run_a1", concurrency_key="a"), new_run("run_a2", concurrency_key="a"))
    await store.admit(new_run("run_b1", concurrency_key="b"))
    await store.take_ready("wkr_a", {"w": NO_LIMITS}, 10)
    assert await store.claim("run_a1", "wkr_a", limit=1) is not None
    assert await store.claim("run_b1", "wkr_a", limit=1) is not None  # another key: room
    assert await store.claim("run_a2", "wkr_a", limit=1) is None  # back to the pool
    assert (await store.get("run_a2")).status == RunStatus.QUEUED


# -- across processes -----------------------------------------------------------------------------------


async def test_limits_hold_across_two_connections_to_one_file(tmp_path):
    path = tmp_path / "shared.db"
    async with _opened(SqliteStore(path)) as one, _opened(SqliteStore(path)) as two:
        await _admit_all(one, *(new_run(f"run_{n:02}", seconds=n, concurrency_key=f"k{n % 3}") for n in range(30)))
        limits = {"w": Limits(concurrency=2)}
        takes = []

        async def take(store: SqliteStore, owner: str) -> None:
            takes.append(await store.take_ready(owner, limits, 4))

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(take, one if n % 2 else two, f"wkr_{n}")
        taken = [r for t in takes for r in t.records]
        assert len(taken) == len({r.run_id for r in taken}) == 6  # two per key, never one run twice
        assert sorted(r.concurrency_key for r in taken) == ["k0", "k0", "k1", "k1", "k2", "k2"]


async def test_racing_debounced_starts_on_two_connections_fold_into_one_run(tmp_path):
    path = tmp_path / "shared.db"
    async with _opened(SqliteStore(path)) as one, _opened(SqliteStore(path)) as two:
        later = utc_now() + timedelta(minutes=5)
        admissions = []

        async def start(store: SqliteStore, n: int) -> None:
            run = new_run(f"run_{n}", debounce_key="d", start_at=later + timedelta(seconds=n), input={"n": n})
            admissions.append(await store.admit(run))

        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(start, one if n % 2 else two, n)
        assert sum(a.created for a in admissions) == 1
        assert len({a.record.run_id for a in admissions}) == 1
        assert len(await one.list(RunQuery())) == 1


# -- debounce ---------------------------------------------------------------------------------------------


async def test_a_debounced_start_folds_into_the_pending_run(tmp_path):
    heard: list[str] = []
    async with _opened(SqliteStore(tmp_path / "flue.db"), heard) as store:
        now = utc_now()
        first = await store.admit(new_run("run_1", debounce_key="d", start_at=now + timedelta(minutes=1), input=1))
        assert first.created and first.record.waiting_for.kind == "debounce"
        heard.clear()
        folded = await store.admit(new_run("run_2", debounce_key="d", start_at=now + timedelta(minutes=2), input=2))
        assert not folded.created and folded.record.run_id == "run_1"
        assert folded.record.input == 2 and folded.record.wake_at == now + timedelta(minutes=2)
        assert folded.record.status == RunStatus.SCHEDULED and folded.record.waiting_for.kind == "debounce"
        assert "run_1" in heard and READY in heard
        assert await store.get("run_2") is None
        assert await store.next_wake() == now + timedelta(minutes=2)
        page = await store.read("run_1", -1, 10)
        assert [e.parse().type for e in page.events] == ["run_queued", "run_debounced"]
        assert page.events[1].parse().data == {"input": 2, "startAt": format_timestamp(now + timedelta(minutes=2))}


async def test_a_bound_idempotency_key_wins_over_debouncing_and_folding_binds_no_key(store):
    later = utc_now() + timedelta(minutes=1)
    await store.admit(new_run("run_1", debounce_key="d", start_at=later, key="k1"))
    again = await store.admit(new_run("run_2", debounce_key="d", start_at=later, key="k1", input="x"))
    assert not again.created and again.record.input is None  # returned as is, not folded
    folded = await store.admit(new_run("run_3", debounce_key="d", start_at=later, key="k2", input="y"))
    assert not folded.created and folded.record.run_id == "run_1" and folded.record.input == "y"
    fresh = await store.admit(new_run("run_4", key="k2"))
    assert fresh.created  # k2 was not bound by the fold


async def test_a_woken_debounce_run_no_longer_folds(store):
    soon = utc_now() + timedelta(milliseconds=1)
    await store.admit(new_run("run_1", debounce_key="d", start_at=soon))
    await store.admit(new_run("run_other", workflow="v", debounce_key="d", start_at=soon))
    assert await store.wake_due(utc_now() + timedelta(seconds=1)) == 2
    admission = await store.admit(new_run("run_2", debounce_key="d", start_at=utc_now() + timedelta(minutes=1)))
    assert admission.created and admission.record.run_id == "run_2"



async def test_a_fold_finds_the_pending_run_through_the_debouncing_index(store):
    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN UPDATE flue_runs SET input = ?, wake_at = ?, priority = ?, concurrency_key = ?,"
            " rate_key = ? WHERE workflow = ? AND debounce_key = ? AND status = 'scheduled' AND cancel_requested = 0",
            (None, None, 0, None, None, "w", "d"),
        )
        return " ".join(row[-1] for row in rows)

    assert "INDEX flue_runs_debouncing" in await store._in_thread(plan)


async def test_a_cancel_frees_the_debounce_key_and_a_fold_moves_the_flow_keys(store):
    later = utc_now() + timedelta(minutes=1)
    await store.admit(new_run("run_1", debounce_key="d", start_at=later, concurrency_key="a", rate_key="x"))
    assert (await store.request_cancel("run_1")).cancel_requested
    fresh = await store.admit(new_run("run_2", debounce_key="d", start_at=later, concurrency_key="a", input=2))
    assert fresh.created
    folded = await store.admit(
        new_run("run_3", debounce_key="d", start_at=later, priority=5, concurrency_key="b", rate_key="y", input=3)
    )
    assert not folded.created and folded.record.run_id == "run_2"
    assert (folded.record.priority, folded.record.concurrency_key, folded.record.rate_key) == (5, "b", "y")
    cancelled = await store.get("run_1")
    assert cancelled is not None and cancelled.concurrency_key == "a" and cancelled.input is None
    assert [r.run_id for r in await store.list(RunQuery(concurrency_key="a"))] == ["run_1"]


# -- the schema ---------------------------------------------------------------------------------------------

# What a version 3 store wrote: a version 2 file as version 3 left it (its upgrade, spelled out), with
# a run running (``run_v2``, of workflow ``w``) and one in the ready pool.
VERSION_3 = (
    VERSION_2
    + """
ALTER TABLE flue_runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flue_runs ADD COLUMN rerun_of TEXT;
ALTER TABLE flue_steps ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX flue_runs_rerun ON flue_runs (rerun_of, created_at, run_id) WHERE rerun_of IS NOT NULL;
CREATE INDEX flue_steps_order ON flue_steps (run_id, seq);
UPDATE flue_meta SET value = '3' WHERE key = 'schema_version';
INSERT INTO flue_runs (run_id, workflow, status, created_at, ready_at)
    VALUES ('run_pooled', 'w', 'queued', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
"""
)


async def test_a_version_3_database_is_upgraded_in_place_and_its_runs_take_part_in_flow_control(tmp_path):
    database = tmp_path / "v3.db"
    with sqlite3.connect(database) as conn:
        conn.executescript(VERSION_3)
    async with _opened(SqliteStore(database)) as store:
        kept = await store.get("run_pooled")
        assert kept is not None and kept.priority == 0
        assert (kept.concurrency_key, kept.rate_key, kept.debounce_key) == (None, None, None)
        assert ids(await store.take_ready("wkr_b", {"w": Limits(concurrency=1)}, 5)) == []  # run_v2 holds the bucket
        await _end(store, "run_v2")
        assert ids(await store.take_ready("wkr_b", {"w": Limits(concurrency=1)}, 5)) == ["run_pooled"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"flue_runs_pool", "flue_runs_held", "flue_runs_started", "flue_runs_debouncing"} <= indexes
    assert not {"flue_runs_ready", "flue_runs_busy"} & indexes



async def test_an_early_version_4_file_gets_the_debouncing_index_that_leaves_out_cancelled_runs(tmp_path):
    database = tmp_path / "v4.db"
    async with _opened(SqliteStore(database)):
        pass
    with sqlite3.connect(database) as conn:  # the index as version 4 first wrote it
        conn.executescript(
            "DROP INDEX flue_runs_debouncing;"
            " CREATE UNIQUE INDEX flue_runs_debouncing ON flue_runs (workflow, debounce_key)"
            " WHERE debounce_key IS NOT NULL AND status = 'scheduled';"
        )
    async with _opened(SqliteStore(database)) as store:
        later = utc_now() + timedelta(minutes=1)
        await store.admit(new_run("run_1", debounce_key="d", start_at=later))
        await store.request_cancel("run_1")
        assert (await store.admit(new_run("run_2", debounce_key="d", start_at=later))).created
    with sqlite3.connect(database) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'flue_runs_debouncing'").fetchone()
        assert conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()[0] == "4"
    assert "cancel_requested = 0" in sql

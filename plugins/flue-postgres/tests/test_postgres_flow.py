"""Flow control in the Postgres store beyond the published contract: what its SQL does on its own
(buckets that fill during one take, a long queue behind a full key, a mixed take), batches sent
again after a lost connection, a schema of version 1 upgraded in place while processes of version 1
still run (their functions, tests/schema_1_runs.sql, are version 1's sql/runs.sql as released), and a
version-2 schema written before version 2's functions had names of their own."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from flue_core.models import RunStatus, utc_now
from flue_core.store import Limits, NewEvent, NewRun, event_json
from flue_postgres import PostgresStore
from flue_postgres.connection import connect
from flue_postgres.rows import FRAMES
from flue_postgres.schema import FUNCTION_PREFIX, RECORD_COLUMNS, SCHEMA_VERSION, sql
from flue_postgres.settings import PostgresSettings

pytestmark = pytest.mark.anyio


def new_run(run_id: str, workflow: str = "w", **fields: object) -> NewRun:
    now = utc_now()
    first = NewEvent(0, "run_queued", {"workflow": workflow, "input": None, "key": None}, now)
    return NewRun(run_id, workflow, fields.pop("input", None), None, now, None, first, **fields)  # type: ignore[arg-type]


def ids(taken) -> list[str]:  # type: ignore[no-untyped-def]
    return [record.run_id for record in taken.records]


async def create_version_1(conn: asyncpg.Connection, settings: PostgresSettings) -> None:
    """A schema as version 1 of flue-postgres wrote it: its tables (schema.sql is version 1's, untouched)
    and its functions, whose records have its 18 columns."""
    await conn.execute(f'CREATE SCHEMA "{settings.schema}"')
    await conn.execute(sql("schema.sql", settings))
    await conn.execute(f"""INSERT INTO "{settings.schema}".meta VALUES ('schema_version', '1')""")
    text = (Path(__file__).parent / "schema_1_runs.sql").read_text(encoding="utf-8")
    record = lambda m: "json_build_array(" + ", ".join(f"{m.group(1)}.{c}" for c in RECORD_COLUMNS[:18]) + ")"  # noqa: E731
    text = re.sub(r"@REC\((\w+)\)@", record, text)
    text = re.sub(r"@FINISHED\(([\w.]+)\)@", lambda m: f"({m.group(1)} IN ('completed', 'failed', 'cancelled'))", text)
    text = text.replace("@S@", f'"{settings.schema}"').replace("@N@", settings.schema)
    text = text.replace("@C@", f"'{settings.channel}'")
    await conn.execute(text)


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_url)
    await store.open(lambda keys: None)
    try:
        yield store
    finally:
        await store.close()


async def test_keys_that_fill_during_one_take_hold_back_only_their_own_runs(store: PostgresStore) -> None:
    for n in range(60):  # three keys, twenty runs each, interleaved: each fills after its first run
        await store.admit(new_run(f"run_{n:02}", concurrency_key=f"k{n % 3}"))
    await store.admit(new_run("run_free", "other"))
    taken = await store.take_ready("wkr_a", {"w": Limits(1), "other": Limits()}, 10)
    assert ids(taken) == ["run_00", "run_01", "run_02", "run_free"]
    assert taken.retry_at is None


async def test_a_long_queue_behind_a_full_key_is_passed_over(store: PostgresStore) -> None:
    for n in range(500):
        await store.admit(new_run(f"run_busy{n:03}", concurrency_key="busy"))
    await store.admit(new_run("run_late", concurrency_key="idle"))
    assert ids(await store.take_ready("wkr_a", {"w": Limits(1)}, 1)) == ["run_busy000"]
    assert ids(await store.take_ready("wkr_a", {"w": Limits(1)}, 5)) == ["run_late"]


async def test_only_and_priority_apply_under_limits(store: PostgresStore) -> None:
    await store.admit(new_run("run_low", concurrency_key="a"))
    await store.admit(new_run("run_high", concurrency_key="a", priority=50))
    await store.admit(new_run("run_elsewhere", concurrency_key="b", priority=100))
    taken = await store.take_ready("wkr_a", {"w": Limits(1)}, 5, only=["run_low", "run_high"])
    assert ids(taken) == ["run_high"]
    assert taken.records[0].priority == 50 and taken.records[0].concurrency_key == "a"


async def test_a_rate_limit_with_no_key_is_one_bucket_and_says_when_it_has_room(store: PostgresStore) -> None:
    for n in range(3):
        await store.admit(new_run(f"run_{n}"))
    await store.admit(new_run("run_keyed", rate_key="eu"))
    before = utc_now()
    taken = await store.take_ready("wkr_a", {"w": Limits(rate=2, per=30.0)}, 10)
    assert ids(taken) == ["run_0", "run_1", "run_keyed"]
    assert taken.retry_at is not None
    assert before + timedelta(seconds=30) <= taken.retry_at <= utc_now() + timedelta(seconds=30)


async def test_debounced_and_plain_admissions_in_one_batch(store: PostgresStore) -> None:
    start_at = utc_now() + timedelta(seconds=30)
    admissions = [store.admit(new_run(f"run_plain{n}")) for n in range(5)]
    admissions += [store.admit(new_run(f"run_d{n}", "d", input=n, start_at=start_at, debounce_key="k")) for n in range(5)]
    results = await asyncio.gather(*admissions)
    assert all(result.created for result in results[:5])
    assert sum(result.created for result in results[5:]) == 1
    pending = await store.get("run_d0")
    assert pending is not None and pending.status == RunStatus.SCHEDULED and pending.input == 4


async def test_a_fold_sent_again_after_a_lost_connection_folds_once(store: PostgresStore, postgres_url: str) -> None:
    start_at = utc_now() + timedelta(seconds=30)
    await store.admit(new_run("run_first", "d", input=1, start_at=start_at, debounce_key="k"))
    sent: list[list[object]] = []
    writer = store._writer
    assert writer is not None
    submit = writer.submit
    writer.submit = lambda args: (sent.append(args), submit(args))[1]  # type: ignore[method-assign]
    await store.admit(new_run("run_second", "d", input=2, start_at=start_at, debounce_key="k"))
    settings = PostgresSettings.from_url(postgres_url)
    conn = await connect(settings, purpose="test")
    try:
        apply = f'SELECT "{settings.schema}".{FUNCTION_PREFIX}apply($1, $2, $3, true, true)'
        answers, _ = json.loads(await conn.fetchval(apply, "test", FRAMES, json.dumps(sent)))
    finally:
        await conn.close()
    assert answers[0][0] == "old" and answers[0][1][0] == "run_first"
    page = await store.read("run_first", -1, 10)
    assert page is not None and [json.loads(event.json)["type"] for event in page.events] == ["run_queued", "run_debounced"]


async def test_a_version_1_schema_is_upgraded_in_place(postgres_url: str) -> None:
    settings = PostgresSettings.from_url(postgres_url)
    conn = await connect(settings, purpose="test")
    try:  # a schema of version 1, a run in the pool, one started
        await create_version_1(conn, settings)
        for run_id, started in (("run_old", None), ("run_resumed", utc_now() - timedelta(hours=1))):
            await conn.execute(
                f'INSERT INTO "{settings.schema}".runs (run_id, workflow, status, created_at, started_at, ready_at)'
                " VALUES ($1, 'w', 'queued', now(), $2, now())",
                run_id,
                started,
            )
            await conn.execute(f"INSERT INTO \"{settings.schema}\".ready VALUES ($1, 'w', now())", run_id)
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    await store.open(lambda keys: None)
    try:
        record = await store.get("run_old")
        assert record is not None and record.priority == 0 and record.concurrency_key is None
        taken = await store.take_ready("wkr_a", {"w": Limits(rate=1, per=60.0)}, 5)
        assert ids(taken) == ["run_old", "run_resumed"]  # a run that started before is not rate-limited
        assert await store._value("SELECT value FROM @S@.meta WHERE key = 'schema_version'") == SCHEMA_VERSION
    finally:
        await store.close()



class Version1:
    """A process of version 1: its connection and the operations it sends, in version 1's shapes."""

    def __init__(self, conn: asyncpg.Connection, settings: PostgresSettings) -> None:
        self.conn = conn
        self.sql = f'SELECT "{settings.schema}".apply($1, $2, $3, true, false)'
        self.ids = iter(range(1000))

    async def call(self, name: str, *args: Any) -> Any:
        ops = [[name, f"old.{next(self.ids)}", *args]]
        answers, _ = json.loads(await self.conn.fetchval(self.sql, "old", FRAMES, json.dumps(ops)))
        return answers[0]

    async def admit(self, run_id: str) -> Any:
        now = utc_now()
        first = event_json(run_id, NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": None}, now))
        return await self.call("admit", run_id, "w", None, "null", now.isoformat(), None, None, None, None, None,
                               first, None, [], False, None)  # fmt: skip

    async def take(self) -> list[str]:
        records = await self.call("take", "wkr_old", 10, [["w", None]], None)
        assert all(len(record) == 18 for record in records)
        return [record[0] for record in records]

    async def claim(self, run_id: str) -> list[Any]:
        record, _, _ = await self.call("claim", run_id, "wkr_old", None, utc_now().isoformat())
        return record

    async def finish(self, run_id: str) -> list[Any]:
        now = utc_now().isoformat()
        return await self.call("finish", run_id, "completed", now, "1", None, None, "wkr_old", now, '{"durationMs":')


async def test_processes_of_version_1_keep_working_while_version_2_upgrades_the_schema(postgres_url: str) -> None:
    settings = PostgresSettings.from_url(postgres_url)
    conn = await connect(settings, purpose="test")
    old = Version1(conn, settings)
    try:
        await create_version_1(conn, settings)
        assert await old.admit("run_before") == ["new"] and await old.admit("run_early") == ["new"]
        assert await old.take() == ["run_before", "run_early"]
        assert len(await old.claim("run_early")) == 18  # its session has run its functions before the upgrade
        store = PostgresStore(postgres_url)
        await store.open(lambda keys: None)
        try:
            assert await store._value("SELECT value FROM @S@.meta WHERE key = 'schema_version'") == SCHEMA_VERSION
            # The old process goes on, in its shapes, on the upgraded tables...
            assert await old.admit("run_after") == ["new"]
            claimed = await old.claim("run_before")
            assert len(claimed) == 18 and claimed[2] == "running"
            ended = await old.finish("run_before")
            assert len(ended) == 18 and ended[2] == "completed"
            assert await old.take() == ["run_after"]
            # ...and the new one sees its runs, and they see the new one's.
            record = await store.get("run_before")
            assert record is not None and record.status == RunStatus.COMPLETED and record.priority == 0
            await store.admit(new_run("run_new", priority=5, concurrency_key="k"))
            assert await old.take() == ["run_new"]
            await store.admit(new_run("run_newer"))
            await store.admit(new_run("run_newest"))  # the old process holds two runs without a key: one place left
            assert ids(await store.take_ready("wkr_new", {"w": Limits(3)}, 5)) == ["run_newer"]
            record = await store.get("run_new")
            assert record is not None and record.priority == 5 and record.concurrency_key == "k"
        finally:
            await store.close()
    finally:
        await conn.close()


async def test_a_version_2_schema_without_its_prefixed_functions_or_current_debounce_index_is_completed(
    postgres_url: str,
) -> None:
    """As a schema written by version 2's code before its functions had names of their own and before
    runs asked to cancel left the debounce index."""
    store = PostgresStore(postgres_url)
    await store.open(lambda keys: None)
    await store.close()
    settings = PostgresSettings.from_url(postgres_url)
    schema = settings.schema
    conn = await connect(settings, purpose="test")
    try:
        for (function,) in await conn.fetch(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = $1",
            schema,
        ):
            await conn.execute(f"DROP FUNCTION {function}")
        await conn.execute(f'DROP INDEX "{schema}".runs_debounce')
        await conn.execute(
            f'CREATE UNIQUE INDEX runs_debounce ON "{schema}".runs (workflow, debounce_key)'
            " WHERE debounce_key IS NOT NULL AND status = 'scheduled'"
        )
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    await store.open(lambda keys: None)
    try:
        start_at = utc_now() + timedelta(seconds=30)
        await store.admit(new_run("run_d1", "d", input=1, start_at=start_at, debounce_key="k"))
        assert await store.request_cancel("run_d1") is not None
        fresh = await store.admit(new_run("run_d2", "d", input=2, start_at=start_at, debounce_key="k"))
        assert fresh.created
        index = await store._value("SELECT pg_get_indexdef(to_regclass($1))", f'"{schema}".runs_debounce')
        assert "cancel_requested" in index
    finally:
        await store.close()

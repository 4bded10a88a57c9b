"""The replay check (``flue replay --store``) and the export of histories read a Postgres store
through the plugin's ``flue_history_reader``, writing nothing there."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flue_core import RunContext, Runtime, replay, runs, workflow, workflows
from flue_core.errors import ConfigurationError
from flue_postgres.server import PostgresServer
from flue_postgres.testing import DATABASE

pytestmark = pytest.mark.anyio


def version(reserve: str = "reserve") -> list[Any]:
    """The deployed code (``reserve``) or a change that renames its first step."""

    @workflow(name="pg-order")
    async def order(ctx: RunContext, input: dict) -> str:
        await ctx.step(reserve, lambda: input["sku"])
        await ctx.sleep(3600)
        return "shipped"

    return [order]


def counts(server: PostgresServer, schema: str) -> str:
    tables = ("runs", "ready", "events", "steps", "signals", "workers", "ops", "meta")
    return server.execute(DATABASE, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{schema}\".{t}" for t in tables))


async def test_a_replay_check_reads_the_runs_and_writes_nothing(postgres_server: PostgresServer, postgres_url: str) -> None:
    async with Runtime(version(), store=postgres_url) as rt:
        started = [await workflows.start("pg-order", input={"sku": sku}) for sku in ("tea", "mug", "pot")]
        with anyio.fail_after(10):
            for receipt in started:
                while (await runs.get(receipt.run_id, runtime=rt)).status != "waiting":
                    await anyio.sleep(0.02)
    schema = postgres_url.rsplit("schema=", 1)[1]
    before = counts(postgres_server, schema)
    assert (await replay.check(version(), store=postgres_url)).ok
    report = await replay.check(version(reserve="hold"), store=postgres_url, unfinished=True)
    assert {d.run_id for d in report.divergences} == {r.run_id for r in started}
    assert counts(postgres_server, schema) == before


async def test_a_schema_without_runs_is_refused_and_left_uncreated(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(DATABASE, schema="never_used")
    with pytest.raises(ConfigurationError, match="No Flue runs were ever stored"):
        await replay.check(version(), store=url)
    found = postgres_server.execute(DATABASE, "SELECT count(*) FROM pg_namespace WHERE nspname = 'never_used'")
    assert found.split()[2] == "0"

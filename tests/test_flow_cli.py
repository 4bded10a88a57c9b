"""Flow control through the ``flue`` command, the real entry point as a subprocess: ``flue start
--priority`` locally and on a server, a priority that is no integer or out of range, and ``flue runs``
saying what a queued run of a busy key waits for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

import cli_app
from cli_support import flue, flue_async, served, store_url
from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.cli.exits import Exit
from flue_core.http import create_app, serve
from flue_core.models import RunRecord

GREET = ["--app", "cli_app", "--input", '{"name": "ada"}']
GATES: dict[str, anyio.Event] = {}


@workflow(name="flow-cli-per-customer", http=True, concurrency=1, concurrency_key="customer")
async def per_customer(ctx: RunContext, input: dict) -> str:
    await GATES[input["gate"]].wait()
    return input["customer"]


@pytest.fixture(autouse=True)
def open_gates() -> Iterator[None]:
    yield
    for gate in GATES.values():
        gate.set()
    GATES.clear()


async def stored_runs(tmp_path: Path) -> list[RunRecord]:
    """The runs on ``tmp_path``'s SQLite file, read by a runtime of the test's own that adopts none."""
    async with Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path), adopt=False) as runtime:
        return (await runs.list(runtime=runtime)).runs


@asynccontextmanager
async def flow_server(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    """``(runtime, url)``: the per-customer workflow served on ``tmp_path``'s SQLite file, the listing open."""
    runtime = Runtime([per_customer], store=store_url(tmp_path), sweep_interval=0.1, shutdown_grace=0.5)
    app = create_app(
        runtime,
        authorize_run_read=lambda request, run: True,
        list_runs_enabled=True,
        authorize_run_list=lambda request: True,
    )
    async with runtime, serve(app) as url:
        yield runtime, url


async def saturate(runtime: Runtime) -> tuple[str, str]:
    """``(running, queued)``: two runs of key ``acme``, the first holding its one slot."""
    GATES["gate"] = anyio.Event()
    running = (await workflows.start(per_customer, input={"gate": "gate", "customer": "acme"}, runtime=runtime)).run_id
    with anyio.fail_after(10):
        while (await runs.get(running, runtime=runtime)).status != "running":
            await anyio.sleep(0.02)
    queued = (await workflows.start(per_customer, input={"gate": "gate", "customer": "acme"}, runtime=runtime)).run_id
    return running, queued


# -- flue start --priority ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_start_with_a_priority_stores_it_on_the_run(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--priority", "5")
    assert result.code == Exit.COMPLETED, result.stderr
    [receipt] = result.json_lines()
    [record] = await stored_runs(tmp_path)
    assert record.run_id == receipt["runId"] and record.priority == 5


@pytest.mark.anyio
async def test_start_on_a_server_with_a_priority_sends_it(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(
            tmp_path, "start", "cli-greet", "--input", '{"name": "ada"}', "--priority", "-20", "--url", url, "--detach"
        )
        [receipt] = result.json_lines()
        record = await runs.get(receipt["runId"], runtime=runtime)
    assert result.code == Exit.COMPLETED, result.stderr
    assert record.priority == -20


@pytest.mark.anyio
@pytest.mark.parametrize("priority", ["x", "1.5", ""])
async def test_a_priority_that_is_not_an_integer_is_a_usage_error_and_creates_no_run(tmp_path, priority):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--priority", priority)
    assert result.code == Exit.USAGE
    assert result.stderr.startswith("flue: usage_error: ") and "--priority" in result.stderr
    assert result.stdout == ""
    assert await stored_runs(tmp_path) == []


@pytest.mark.anyio
async def test_a_priority_out_of_range_is_rejected_with_65_and_creates_no_run(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--priority", "101")
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: invalid_priority: ") and "-100 to 100" in result.stderr
    assert await stored_runs(tmp_path) == []


@pytest.mark.anyio
async def test_a_priority_out_of_range_on_a_server_is_rejected_with_65_and_creates_no_run(tmp_path):
    async with served(tmp_path, list_runs_enabled=True, authorize_run_list=lambda request: True) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-greet", "--input", '{"name": "ada"}', "--priority", "-101", "--url", url)
        page = await runs.list(runtime=runtime)
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: invalid_priority: ")
    assert page.runs == []


# -- flue runs: what a queued run waits for -----------------------------------------------------------------


@pytest.mark.anyio
async def test_runs_as_text_shows_what_a_queued_run_of_a_busy_key_waits_for(tmp_path):
    async with flow_server(tmp_path) as (runtime, url):
        running, queued = await saturate(runtime)
        result = await flue_async(tmp_path, "runs", "--url", url, "--format", "text")
    assert result.code == Exit.COMPLETED, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION", "WAITS", "FOR"]
    rows = {line.split()[0]: line for line in lines}
    assert rows[queued].split()[1:3] == ["flow-cli-per-customer", "queued"]
    assert rows[queued].rstrip().endswith("slot of 'acme' (1/1 running)")
    assert "slot" not in rows[running]
    assert rows[queued].index("slot") == header.index("WAITS FOR")  # in its column


@pytest.mark.anyio
async def test_runs_as_ndjson_carries_what_a_queued_run_waits_for(tmp_path):
    async with flow_server(tmp_path) as (runtime, url):
        running, queued = await saturate(runtime)
        result = await flue_async(tmp_path, "runs", "--url", url)
    records = {record["runId"]: record for record in result.json_lines()}
    assert records[queued]["queuedFor"]["kind"] == "slot"
    assert records[queued]["queuedFor"]["message"] == "A slot of key 'acme': 1 of 1 running."
    assert records[running]["queuedFor"] is None


@pytest.mark.anyio
async def test_runs_on_the_local_store_without_the_app_does_not_guess_what_a_queued_run_waits_for(tmp_path):
    # `flue runs` reads the store without the application's workflows, so it cannot know their limits:
    # it must not say the run of a busy key waits for "a worker".
    async with flow_server(tmp_path) as (runtime, url):
        running, queued = await saturate(runtime)
        text = await flue_async(tmp_path, "runs", "--format", "text")
        records = {record["runId"]: record for record in (await flue_async(tmp_path, "runs")).json_lines()}
    assert text.code == Exit.COMPLETED, text.stderr
    assert "WAITS FOR" not in text.stdout and "a worker" not in text.stdout
    assert records[queued]["status"] == "queued" and records[queued]["queuedFor"] is None
    assert records[queued]["concurrencyKey"] == "acme"


@pytest.mark.anyio
async def test_runs_without_a_queued_run_has_no_waits_for_column(tmp_path):
    flue(tmp_path, "start", "cli-greet", *GREET)
    header = flue(tmp_path, "runs", "--format", "text").stdout.splitlines()[0]
    assert "WAITS FOR" not in header
    assert json.loads(flue(tmp_path, "runs").stdout)["queuedFor"] is None


@pytest.mark.anyio
async def test_runs_on_the_local_store_with_the_app_says_what_a_queued_run_waits_for(tmp_path):
    # With --app the listing knows the workflows' limits, as the server does.
    async with flow_server(tmp_path) as (runtime, url):
        running, queued = await saturate(runtime)
        text = await flue_async(tmp_path, "runs", "--app", "test_flow_cli", "--format", "text")
    assert text.code == Exit.COMPLETED, text.stderr
    rows = {line.split()[0]: line for line in text.stdout.splitlines()[1:]}
    assert rows[queued].rstrip().endswith("slot of 'acme' (1/1 running)")

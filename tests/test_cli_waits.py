"""``flue signal``, ``flue schedules``, ``flue runs prune``/``--parent`` and ``flue start --delay``:
on the local store (a real SQLite file shared with the test's runtime) and on a server (``--url``)."""

from __future__ import annotations

import sqlite3

import pytest

from cli_support import flue_async, served, store_url
from flue_core import RunStatus, Runtime, runs, schedules, workflows
from flue_core.cli.exits import Exit
from flue_core.models import parse_timestamp
from flue_core.testing.base import wait_for_status
import cli_app

pytestmark = pytest.mark.anyio


def grant(request, run=None) -> bool:
    return True


async def test_signal_on_the_local_store_resumes_a_run_another_process_waits_in(tmp_path):
    async with served(tmp_path) as (runtime, _):
        receipt = await workflows.start("cli-approval", runtime=runtime)
        await wait_for_status(runtime, receipt.run_id, "waiting")
        result = await flue_async(tmp_path, "signal", receipt.run_id, "approve", "--data", '{"approved": true}', "--app", "cli_app")
        assert result.code == Exit.COMPLETED, result.stderr
        [sent] = result.json_lines()
        assert sent["runId"] == receipt.run_id and sent["name"] == "approve" and sent["duplicate"] is False
        assert await runs.result(receipt.run_id, timeout=10, runtime=runtime) is True


async def test_logs_as_text_describe_the_wait_and_the_signal_in_aligned_columns(tmp_path):
    async with served(tmp_path) as (runtime, _):
        receipt = await workflows.start("cli-approval", runtime=runtime)
        await wait_for_status(runtime, receipt.run_id, "waiting")
        await runs.signal(receipt.run_id, "approve", {"approved": True}, key="k-1", runtime=runtime)
        await runs.wait(receipt.run_id, timeout=10, runtime=runtime)
    result = await flue_async(tmp_path, "logs", receipt.run_id, "--format", "text")
    assert result.code == Exit.COMPLETED, result.stderr
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines()]  # without the time
    assert "waiting     signal approve" in lines
    assert 'signal      approve  key=k-1  data={"approved":true}' in lines
    assert "delivered   approve" in lines
    assert "resumed     attempt 1" in lines
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # every text starts in one column


async def test_signal_data_the_workflow_refuses_exits_65_and_sends_nothing(tmp_path):
    async with served(tmp_path) as (runtime, _):
        receipt = await workflows.start("cli-approval", runtime=runtime)
        await wait_for_status(runtime, receipt.run_id, "waiting")
        result = await flue_async(tmp_path, "signal", receipt.run_id, "approve", "--data", '{"approved": "maybe"}', "--app", "cli_app")
        assert result.code == Exit.REJECTED and result.stderr.startswith("flue: invalid_signal: ")
        assert (await runs.get(receipt.run_id, runtime=runtime)).status == RunStatus.WAITING


@pytest.mark.parametrize("key", ["k1", "ключ"])
async def test_signal_on_a_server_with_a_key_is_delivered_once(tmp_path, key):
    async with served(tmp_path, authorize_run_signal=grant) as (runtime, url):
        receipt = await workflows.start("cli-approval", runtime=runtime)
        await wait_for_status(runtime, receipt.run_id, "waiting")
        args = ("signal", receipt.run_id, "approve", "--data", '{"approved": false}', "--key", key, "--url", url)
        first, again = await flue_async(tmp_path, *args), await flue_async(tmp_path, *args)
        assert first.code == again.code == Exit.COMPLETED, first.stderr + again.stderr
        assert again.json_lines()[0]["duplicate"] is True
        assert await runs.result(receipt.run_id, timeout=10, runtime=runtime) is False


async def test_signal_to_an_unknown_or_ended_run_exits_typed(tmp_path):
    async with served(tmp_path) as (runtime, _):
        receipt = await workflows.start("cli-greet", input={"name": "x"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=10, runtime=runtime)
        unknown = await flue_async(tmp_path, "signal", "run_nobody", "approve")
        ended = await flue_async(tmp_path, "signal", receipt.run_id, "approve")
    assert unknown.code == Exit.NOT_FOUND
    assert ended.code == Exit.REJECTED and ended.stderr.startswith("flue: run_finished: ")


async def test_schedules_are_managed_on_the_local_store(tmp_path):
    created = await flue_async(
        tmp_path, "schedules", "create", "nightly", "cli-greet", "0 2 * * *", "--input", '{"name": "night"}',
        "--timezone", "Europe/Berlin", "--app", "cli_app",
    )  # fmt: skip
    assert created.code == Exit.COMPLETED, created.stderr
    assert created.json_lines()[0]["timezone"] == "Europe/Berlin"
    listed = await flue_async(tmp_path, "schedules")
    assert [s["name"] for s in listed.json_lines()] == ["nightly"]
    paused = await flue_async(tmp_path, "schedules", "pause", "nightly")
    assert paused.json_lines()[0]["paused"] is True
    resumed = await flue_async(tmp_path, "schedules", "resume", "nightly")
    assert resumed.json_lines()[0]["paused"] is False
    deleted = await flue_async(tmp_path, "schedules", "delete", "nightly")
    assert deleted.code == Exit.COMPLETED
    missing = await flue_async(tmp_path, "schedules", "delete", "nightly")
    assert missing.code == Exit.NOT_FOUND


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("create", "n", "cli-greet", "61 * * * *", "--input", '{"name": "x"}', "--app", "cli_app"), Exit.REJECTED),
        (("create", "n", "cli-greet", "* * * * *", "--input", '{"nom": "x"}', "--app", "cli_app"), Exit.REJECTED),
        (("create", "n", "cli-greet", "* * * * *"), Exit.USAGE),
    ],
)
async def test_a_bad_schedule_exits_typed_and_stores_nothing(tmp_path, args, code):
    result = await flue_async(tmp_path, "schedules", *args)
    assert result.code == code, result.stderr
    assert (await flue_async(tmp_path, "schedules")).stdout == ""


async def test_schedules_on_a_server(tmp_path):
    async with served(tmp_path, schedules_enabled=True, authorize_schedules=grant) as (runtime, url):
        created = await flue_async(tmp_path, "schedules", "create", "hourly", "cli-greet", "0 * * * *", "--input", '{"name": "h"}', "--url", url)
        assert created.code == Exit.COMPLETED, created.stderr
        assert [s.name for s in await schedules.list(runtime=runtime)] == ["hourly"]
        listed = await flue_async(tmp_path, "schedules", "--url", url, "--format", "text")
        assert "hourly" in listed.stdout and "0 * * * *" in listed.stdout
    async with served(tmp_path) as (runtime, url):
        off = await flue_async(tmp_path, "schedules", "--url", url)
    assert off.code == Exit.NOT_FOUND and "schedules_enabled" in off.stderr


async def test_runs_prune_deletes_only_runs_that_ended_long_enough_ago(tmp_path):
    async with Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path)) as runtime:
        old = await workflows.start("cli-greet", input={"name": "old"}, runtime=runtime)
        await runs.wait(old.run_id, timeout=10, runtime=runtime)
        new = await workflows.start("cli-greet", input={"name": "new"}, runtime=runtime)
        await runs.wait(new.run_id, timeout=10, runtime=runtime)
    with sqlite3.connect(tmp_path / "flue.db") as conn:  # the old run ended years ago
        conn.execute("UPDATE flue_runs SET ended_at = '2020-01-01T00:00:00.000Z' WHERE run_id = ?", (old.run_id,))
    result = await flue_async(tmp_path, "runs", "prune", "--older-than", "1d")
    assert result.code == Exit.COMPLETED and result.json_lines() == [{"pruned": 1}]
    listed = await flue_async(tmp_path, "runs")
    assert [r["runId"] for r in listed.json_lines()] == [new.run_id]


@pytest.mark.parametrize("args", [("prune",), ("prune", "--older-than", "soon"), ("prune", "--older-than", "10000000d"), ("--older-than", "1d"), ("prune", "--older-than", "1d", "--url", "http://127.0.0.1:9")])
async def test_runs_prune_usage_errors(tmp_path, args):
    assert (await flue_async(tmp_path, "runs", *args)).code == Exit.USAGE


async def test_start_with_a_delay_is_scheduled_then_runs(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-greet", "--input", '{"name": "later"}', "--delay", "0.3", "--url", url, "--detach")
        [receipt] = result.json_lines()
        # Admitted scheduled (its start time in its first event, whatever the machine's speed), then run.
        first = [event async for event in runs.events(receipt["runId"], runtime=runtime)][0]
        assert first.type == "run_queued" and "startAt" in first.data
        assert await runs.result(receipt["runId"], timeout=10, runtime=runtime) == {"greeting": "hello later"}
        events = [event async for event in runs.events(receipt["runId"], runtime=runtime)]
        started = next(event for event in events if event.type == "run_start")
        assert started.timestamp >= parse_timestamp(first.data["startAt"])
    bad = await flue_async(tmp_path, "start", "cli-greet", "--delay", "-1", "--app", "cli_app")
    assert bad.code == Exit.USAGE


async def test_runs_parent_lists_children(tmp_path):
    async with served(tmp_path) as (runtime, _):
        receipt = await workflows.start("cli-greet", input={"name": "p"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=10, runtime=runtime)
        none = await flue_async(tmp_path, "runs", "--parent", receipt.run_id)
        bad = await flue_async(tmp_path, "runs", "--parent", "not an id")
    assert none.code == Exit.COMPLETED and none.stdout == ""
    assert bad.code == Exit.REJECTED and bad.stderr.startswith("flue: invalid_query: ")

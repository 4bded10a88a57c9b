"""Starting runs from sync host code: a worker thread, a sync scheduler callback, a sync program."""

from __future__ import annotations

import threading

import anyio
import pytest

from flue_core import RunContext, Runtime, RuntimeNotRunning, runs, workflow, workflows
from flue_core.errors import SyncCallOnEventLoop

pytestmark = pytest.mark.anyio


@workflow(name="sync-echo")
async def echo(ctx: RunContext, input: dict) -> dict:
    return input


def test_a_sync_program_runs_the_runtime_in_a_thread():
    with Runtime([echo], store="memory://").run_in_thread() as runtime:
        receipt = workflows.start_sync(echo, input={"n": 1})
        assert runtime.call_sync(runs.result, receipt.run_id) == {"n": 1}
    assert not runtime.running


def test_call_sync_forwards_keyword_arguments_to_the_function():
    with Runtime([echo], store="memory://").run_in_thread() as runtime:
        receipt = workflows.start_sync(echo, input={"n": 2})
        assert runtime.call_sync(runs.result, receipt.run_id, timeout=5, runtime=runtime) == {"n": 2}
        page = runtime.call_sync(runs.list, workflow="sync-echo", limit=10)
        assert [run.run_id for run in page.runs] == [receipt.run_id]


async def test_a_sync_callback_on_another_thread_starts_runs_on_the_open_runtime():
    receipts = []

    def scheduler_callback() -> None:  # e.g. a sync scheduler's job, on its own thread
        receipts.append(workflows.start_sync("sync-echo", input={"from": "thread"}, key="tick-1"))

    async with Runtime([echo], store="memory://"):
        thread = threading.Thread(target=scheduler_callback)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert await runs.result(receipts[0].run_id, timeout=5) == {"from": "thread"}


async def test_start_sync_on_the_event_loop_thread_is_refused():
    async with Runtime([echo], store="memory://"):
        with pytest.raises(SyncCallOnEventLoop, match="await") as caught:
            workflows.start_sync(echo, input={})
        assert caught.value.code == "sync_call_on_event_loop"


def test_start_sync_without_an_open_runtime_is_a_typed_error():
    with pytest.raises(RuntimeNotRunning) as caught:
        workflows.start_sync(echo, input={})
    assert caught.value.code == "runtime_not_running"


async def test_start_without_an_open_runtime_is_a_typed_error():
    with pytest.raises(RuntimeNotRunning):
        await workflows.start(echo, input={})

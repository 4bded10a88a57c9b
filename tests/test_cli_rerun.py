"""``flue rerun`` and ``flue runs --rerun-of``: the real entry point, on the local store (a SQLite
file in ``tmp_path``) and against a server (``--url``). The application is written into ``tmp_path``
and counts each call of a step's function in a file there, so a step taken over is seen not to run."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from cli_support import flue, flue_async, store_url
from flue_core import Runtime, runs, workflows
from flue_core.cli.exits import Exit
from flue_core.cli.view import Output, records_table
from flue_core.http import create_app, serve
from flue_core.models import RunRecord, RunStatus

APP = '''
"""Workflows of the re-run CLI tests; every call of a step's function is a line of calls.txt."""
from pathlib import Path
from flue_core import RunContext, workflow

HERE = Path(__file__).parent


def _called(name):
    with open(HERE / "calls.txt", "a") as calls:
        calls.write(name + "\\n")


def reserve(n):
    _called("reserve")
    return n * 10


def charge(amount):
    _called("charge")
    if (HERE / "broken").exists():
        raise RuntimeError("the card service is down")
    return amount + 1


@workflow(name="order", http=True)
async def order(ctx: RunContext, input: dict) -> int:
    amount = await ctx.step("reserve", reserve, input["n"])
    return await ctx.step("charge", charge, amount)
'''
_modules = itertools.count()


@pytest.fixture
def app(tmp_path: Path) -> ModuleType:
    """The application, as ``rerun_app`` in ``tmp_path`` for the ``flue`` subprocesses and imported
    here too (under a name of this test's own) for the test's runtime and server."""
    path = tmp_path / "rerun_app.py"
    path.write_text(APP)
    spec = importlib.util.spec_from_file_location(f"rerun_app_{next(_modules)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def local_runtime(app: ModuleType, tmp_path: Path) -> Runtime:
    return Runtime([app.order], store=store_url(tmp_path), sweep_interval=0.1, shutdown_grace=0.5, adopt=False)


def failed_run(tmp_path: Path) -> str:
    """A run of ``order`` that failed at ``charge``, which is then fixed."""
    (tmp_path / "broken").touch()
    result = flue(tmp_path, "start", "order", "--app", "rerun_app", "--input", '{"n": 4}')
    assert result.code == Exit.FAILED, result.stderr
    (tmp_path / "broken").unlink()
    return result.json_lines()[0]["runId"]


async def stored(app: ModuleType, tmp_path: Path, run_id: str) -> RunRecord:
    async with local_runtime(app, tmp_path) as runtime:
        record = await runs.get(run_id, runtime=runtime)
    assert record is not None
    return record


# -- on the local store -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rerun_executes_the_new_run_here_taking_over_the_steps_stored_before_the_failed_one(app, tmp_path):
    old = failed_run(tmp_path)
    result = flue(tmp_path, "rerun", old, "--app", "rerun_app")
    assert result.code == Exit.COMPLETED, result.stderr
    [receipt] = result.json_lines()
    assert receipt["runId"] != old and receipt["workflow"] == "order"
    record = await stored(app, tmp_path, receipt["runId"])
    assert record.status == RunStatus.COMPLETED and record.result == 41 and record.rerun_of == old
    assert calls(tmp_path) == ["reserve", "charge", "charge"]  # reserve was not called again


def test_rerun_in_text_prints_the_new_run_and_the_one_it_reruns(app, tmp_path):
    old = failed_run(tmp_path)
    result = flue(tmp_path, "rerun", old, "--app", "rerun_app", "--format", "text")
    assert result.code == Exit.COMPLETED, result.stderr
    first, end = result.stdout.splitlines()
    assert first.startswith("run_") and first.endswith(f"order  admitted, re-run of {old}")
    assert "completed" in end


def test_rerun_from_step_follows_the_new_runs_events(app, tmp_path):
    old = failed_run(tmp_path)
    result = flue(tmp_path, "rerun", old, "--app", "rerun_app", "--from-step", "reserve", "-f")
    assert result.code == Exit.COMPLETED, result.stderr
    events = result.json_lines()
    assert events[0]["type"] == "run_queued" and events[0]["data"]["rerunOf"] == old
    steps = [(e["data"]["name"], e["data"]["replayed"]) for e in events if e["type"] == "step"]
    assert steps == [("reserve", False), ("charge", False)]
    assert calls(tmp_path) == ["reserve", "charge", "reserve", "charge"]


def test_rerun_with_a_key_answers_the_same_run_again(app, tmp_path):
    old = failed_run(tmp_path)
    first = flue(tmp_path, "rerun", old, "--app", "rerun_app", "--key", "after-fix")
    again = flue(tmp_path, "rerun", old, "--app", "rerun_app", "--key", "after-fix")
    assert first.code == again.code == Exit.COMPLETED, again.stderr
    assert first.json_lines() == again.json_lines()
    assert calls(tmp_path) == ["reserve", "charge", "charge"]


def test_a_from_step_the_run_did_not_store_exits_65(app, tmp_path):
    old = failed_run(tmp_path)
    done = flue(tmp_path, "rerun", old, "--app", "rerun_app").json_lines()[0]["runId"]
    result = flue(tmp_path, "rerun", done, "--app", "rerun_app", "--from-step", "refund")
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: invalid_rerun: ") and "reserve, charge" in result.stderr


@pytest.mark.anyio
async def test_rerunning_a_run_that_has_not_ended_exits_65(app, tmp_path):
    async with local_runtime(app, tmp_path) as runtime:
        later = await workflows.start(app.order, input={"n": 1}, delay=3600, runtime=runtime)
    result = await flue_async(tmp_path, "rerun", later.run_id, "--app", "rerun_app")
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: run_unfinished: ")


def test_rerunning_an_unknown_run_exits_66(app, tmp_path):
    result = flue(tmp_path, "rerun", "run_00000000000000000000000000", "--app", "rerun_app")
    assert result.code == Exit.NOT_FOUND
    assert "Looked in the local store" in result.stderr


def test_a_local_rerun_needs_the_applications_workflows(app, tmp_path):
    old = failed_run(tmp_path)
    result = flue(tmp_path, "rerun", old)
    assert result.code == Exit.CONFIG and "--app" in result.stderr


def test_runs_rerun_of_lists_only_the_reruns_of_that_run(app, tmp_path):
    old, other = failed_run(tmp_path), failed_run(tmp_path)
    new = flue(tmp_path, "rerun", old, "--app", "rerun_app").json_lines()[0]["runId"]
    flue(tmp_path, "rerun", other, "--app", "rerun_app")
    listed = flue(tmp_path, "runs", "--rerun-of", old)
    assert listed.code == Exit.COMPLETED, listed.stderr
    assert [(run["runId"], run["rerunOf"]) for run in listed.json_lines()] == [(new, old)]
    table = flue(tmp_path, "runs", "--rerun-of", old, "--format", "text").stdout.splitlines()
    assert table[0].split() == ["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION", "RERUN", "OF"]
    assert table[1].split()[0] == new and table[1].split()[-1] == old


def test_the_runs_table_shows_recoveries_and_the_rerun_only_when_a_run_has_them():
    def record(**fields: Any) -> RunRecord:
        created = datetime(2026, 1, 1, tzinfo=timezone.utc)
        return RunRecord(run_id=f"run_{len(fields)}", workflow="order", status="completed", created_at=created, **fields)

    out = Output(io.StringIO(), "text")
    assert records_table([record()], out)[0].split() == ["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION"]
    header, *rows = records_table([record(recoveries=2, rerun_of="run_old"), record()], out)
    assert header.split()[-3:] == ["RECOVERIES", "RERUN", "OF"]
    assert rows[0].split()[-2:] == ["2", "run_old"]
    assert len(rows[1].split()) == 5  # the run that has neither: blank cells


# -- against a server ---------------------------------------------------------------------------------


def _grant(request: Any, run: Any = None) -> bool:
    return True


async def served_run(app: ModuleType, tmp_path: Path, **options: Any):
    runtime = Runtime([app.order], store=store_url(tmp_path), sweep_interval=0.1, shutdown_grace=0.5)
    options = {"authorize_run_read": _grant, "list_runs_enabled": True, "authorize_run_list": _grant, **options}
    return runtime, serve(create_app(runtime, **options))


@pytest.mark.anyio
async def test_rerun_on_a_server_prints_the_new_run_and_returns(app, tmp_path):
    old = failed_run(tmp_path)
    runtime, serving = await served_run(app, tmp_path, authorize_run_rerun=_grant)
    async with runtime, serving as url:
        result = await flue_async(tmp_path, "rerun", old, "--url", url)
        assert result.code == Exit.COMPLETED, result.stderr
        [receipt] = result.json_lines()
        with anyio.fail_after(5):
            record = await runs.wait(receipt["runId"], runtime=runtime)
        listed = await flue_async(tmp_path, "runs", "--rerun-of", old, "--url", url)
    assert record.status == RunStatus.COMPLETED and record.rerun_of == old
    assert [run["runId"] for run in listed.json_lines()] == [receipt["runId"]]
    assert calls(tmp_path) == ["reserve", "charge", "charge"]


@pytest.mark.anyio
async def test_rerun_follow_on_a_server_exits_with_the_new_runs_outcome(app, tmp_path):
    old = failed_run(tmp_path)
    (tmp_path / "broken").touch()  # not fixed after all
    runtime, serving = await served_run(app, tmp_path, authorize_run_rerun=_grant)
    async with runtime, serving as url:
        result = await flue_async(tmp_path, "rerun", old, "--url", url, "--follow")
    assert result.code == Exit.FAILED
    assert json.loads(result.stdout.splitlines()[-1])["data"]["status"] == "failed"


@pytest.mark.anyio
async def test_rerun_on_a_server_that_does_not_grant_it_exits_65(app, tmp_path):
    old = failed_run(tmp_path)
    runtime, serving = await served_run(app, tmp_path)
    async with runtime, serving as url:
        result = await flue_async(tmp_path, "rerun", old, "--url", url)
        assert (await runs.list(rerun_of=old, runtime=runtime)).runs == []
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: run_rerun_denied: ")

"""The ``flue`` command on the local store: the real entry point, a real SQLite file in ``tmp_path``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import cli_app
from cli_support import FLUE, flue, flue_async, flue_env, flue_on_terminal, flue_running, store_url
from flue_core import Runtime, runs, workflows
from flue_core.cli import main
from flue_core.cli.exits import Exit
from flue_core.offsets import format_offset
from flue_core.testing.recovery import leave_behind
from flue_node_like import LocalTarget, SqliteStore

GREET = ["--app", "cli_app", "--input", '{"name": "ada"}']


def local_runtime(tmp_path: Path) -> Runtime:
    """The test's own runtime on the same SQLite file the ``flue`` subprocesses use (it adopts no
    other worker's runs, so reading the store leaves them as they are)."""
    return Runtime(cli_app.WORKFLOWS, store=store_url(tmp_path), sweep_interval=0.1, shutdown_grace=0.5, adopt=False)


async def stored_events(tmp_path: Path, run_id: str) -> list[dict]:
    async with local_runtime(tmp_path) as runtime:
        return [e.model_dump(mode="json") async for e in runs.events(run_id, runtime=runtime)]


async def stored_record(tmp_path: Path, run_id: str):
    async with local_runtime(tmp_path) as runtime:
        return await runs.get(run_id, runtime=runtime)


# -- start --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_start_prints_the_receipt_and_executes_the_run_before_exiting(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET)
    assert result.code == Exit.COMPLETED, result.stderr
    [receipt] = result.json_lines()
    assert receipt["workflow"] == "cli-greet" and receipt["offset"] == "-1"
    record = await stored_record(tmp_path, receipt["runId"])
    assert record.status == "completed" and record.result == {"greeting": "hello ada"}


@pytest.mark.anyio
async def test_start_follow_prints_each_event_exactly_as_stored_with_its_offset(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--follow")
    assert result.code == Exit.COMPLETED, result.stderr
    lines = result.json_lines()
    assert [line["type"] for line in lines] == [
        "run_queued", "run_start", "log", "progress", "progress", "greeted", "log", "run_end",
    ]
    stored = await stored_events(tmp_path, lines[0]["runId"])
    assert [{k: v for k, v in line.items() if k != "offset"} for line in lines] == stored
    assert [line["offset"] for line in lines] == [format_offset(i) for i in range(len(lines))]


def test_piped_output_is_ndjson_only_and_run_logs_do_not_reach_stderr(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--follow")
    assert all(line.startswith("{") for line in result.stdout.splitlines())
    assert "done soon" not in result.stderr  # a ctx.log warning is an event, not a stray log line


def test_start_exits_1_when_the_run_fails(tmp_path):
    result = flue(tmp_path, "start", "cli-fail", "--app", "cli_app", "--follow")
    assert result.code == Exit.FAILED
    end = result.json_lines()[-1]
    assert end["type"] == "run_end" and end["data"]["status"] == "failed"
    assert end["data"]["error"]["message"] == "it broke"


def test_start_with_the_same_key_returns_the_same_run(tmp_path):
    first = flue(tmp_path, "start", "cli-greet", *GREET, "--key", "k1")
    again = flue(tmp_path, "start", "cli-greet", *GREET, "--key", "k1")
    assert first.code == again.code == Exit.COMPLETED
    assert first.json_lines()[0]["runId"] == again.json_lines()[0]["runId"]


def test_start_reads_input_from_a_file_and_from_stdin(tmp_path):
    (tmp_path / "input.json").write_text('{"name": "file"}')
    from_file = flue(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", "@input.json", "--follow")
    from_stdin = flue(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", "-", "--follow", input='{"name": "pipe"}')
    assert from_file.json_lines()[-1]["data"]["result"] == {"greeting": "hello file"}
    assert from_stdin.json_lines()[-1]["data"]["result"] == {"greeting": "hello pipe"}


@pytest.mark.anyio
async def test_start_with_invalid_input_exits_65_names_the_problem_and_creates_no_run(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", '{"nom": "ada"}')
    assert result.code == Exit.REJECTED
    assert result.stdout == ""
    assert "flue: invalid_input:" in result.stderr and "name: Field required" in result.stderr
    async with local_runtime(tmp_path) as runtime:
        assert (await runs.list(runtime=runtime)).runs == []


def test_start_with_malformed_json_input_is_a_usage_error(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", "{name")
    assert result.code == Exit.USAGE
    assert result.stderr.startswith("flue: usage_error: The input from --input is not valid JSON")


def test_start_of_an_unknown_workflow_exits_66(tmp_path):
    result = flue(tmp_path, "start", "no-such-workflow", "--app", "cli_app")
    assert result.code == Exit.NOT_FOUND
    assert "flue: workflow_not_found:" in result.stderr


def test_start_without_an_app_is_a_configuration_error(tmp_path):
    result = flue(tmp_path, "start", "cli-greet")
    assert result.code == Exit.CONFIG
    assert "flue: app_not_loaded:" in result.stderr and "--app" in result.stderr


def test_start_with_an_app_that_cannot_be_imported_is_a_configuration_error(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--app", "no_such_module:runtime")
    assert result.code == Exit.CONFIG
    assert "Cannot import module 'no_such_module'" in result.stderr


def test_the_app_may_be_a_runtime_named_by_flue_app(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--input", '{"name": "rt"}', env=flue_env(tmp_path, FLUE_APP="cli_app:runtime"))
    assert result.code == Exit.COMPLETED, result.stderr


def test_the_app_may_be_the_http_app_serve_takes(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--input", '{"name": "web"}', "--app", "cli_app:app")
    assert result.code == Exit.COMPLETED, result.stderr


def test_runs_are_stored_in_dot_flue_under_the_working_directory_by_default(tmp_path):
    env = flue_env(tmp_path)
    del env["FLUE_STORE"]
    result = flue(tmp_path, "start", "cli-greet", *GREET, env=env)
    assert result.code == Exit.COMPLETED, result.stderr
    assert (tmp_path / ".flue" / "flue.db").exists()
    assert not (tmp_path / "flue.db").exists()


def test_detach_needs_a_server(tmp_path):
    result = flue(tmp_path, "start", "cli-greet", *GREET, "--detach")
    assert result.code == Exit.USAGE


@pytest.mark.anyio
async def test_start_leaves_runs_orphaned_by_another_worker_alone_and_exits_at_once(tmp_path):
    orphan = {"path": str(tmp_path / "never")}  # were it adopted, it would wait out the shutdown grace
    await leave_behind(LocalTarget(SqliteStore(tmp_path / "flue.db")), "run_orphan", "cli-gated", orphan, started=False)
    started = time.monotonic()
    result = flue(tmp_path, "start", "cli-greet", *GREET)
    elapsed = time.monotonic() - started
    assert result.code == Exit.COMPLETED, result.stderr
    assert elapsed < 5  # the local target's shutdown grace is 10 s
    record = await stored_record(tmp_path, "run_orphan")
    assert record.status == "queued" and record.attempt == 0
    assert [event["type"] for event in await stored_events(tmp_path, "run_orphan")] == ["run_queued"]


@pytest.mark.anyio
async def test_ctrl_c_cancels_the_local_run_waits_for_its_end_and_exits_130(tmp_path):
    gate = tmp_path / "gate"
    async with flue_running(
        tmp_path, "start", "cli-gated", "--app", "cli_app", "--input", json.dumps({"path": str(gate)}), "--follow"
    ) as running:
        while (await running.json_line())["type"] != "waiting":
            pass
        running.process.send_signal(signal.SIGINT)
        lines = [json.loads(line) for line in await running.rest()]
        assert await running.exit_code() == Exit.INTERRUPTED
    assert lines[-1]["type"] == "run_end" and lines[-1]["data"]["status"] == "cancelled"
    record = await stored_record(tmp_path, lines[0]["runId"])
    assert record.status == "cancelled"


# -- logs ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_logs_follow_follows_a_run_that_is_still_going_until_it_ends(tmp_path):
    gate = tmp_path / "gate"
    async with local_runtime(tmp_path) as runtime:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        async with flue_running(tmp_path, "logs", receipt.run_id, "--follow") as running:
            while (await running.json_line())["type"] != "waiting":
                pass
            gate.touch()  # the run, executing in this process, goes on; the follower must see it
            rest = [json.loads(line) for line in await running.rest()]
            assert await running.exit_code() == Exit.COMPLETED
    types = [json.loads(line)["type"] for line in running.lines]
    assert types == ["run_queued", "run_start", "waiting", "released", "run_end"]
    assert rest[-1]["data"]["result"] == "released"


@pytest.mark.anyio
async def test_logs_without_follow_prints_what_exists_and_exits_0_while_the_run_goes_on(tmp_path):
    gate = tmp_path / "gate"
    async with local_runtime(tmp_path) as runtime:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        async for event in runs.events(receipt.run_id, follow=True, runtime=runtime):
            if event.type == "waiting":
                break
        result = await flue_async(tmp_path, "logs", receipt.run_id)
        gate.touch()
    assert result.code == Exit.COMPLETED
    assert [line["type"] for line in result.json_lines()] == ["run_queued", "run_start", "waiting"]


@pytest.mark.anyio
async def test_logs_exit_code_is_the_outcome_of_the_run(tmp_path):
    failed = flue(tmp_path, "start", "cli-fail", "--app", "cli_app").json_lines()[0]["runId"]
    gate = tmp_path / "gate"
    async with local_runtime(tmp_path) as runtime:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        await runs.cancel(receipt.run_id, runtime=runtime)
    assert flue(tmp_path, "logs", failed).code == Exit.FAILED
    assert flue(tmp_path, "logs", receipt.run_id).code == Exit.CANCELLED


def test_logs_from_an_offset_prints_only_the_events_after_it(tmp_path):
    lines = flue(tmp_path, "start", "cli-greet", *GREET, "--follow").json_lines()
    result = flue(tmp_path, "logs", lines[0]["runId"], "--offset", lines[4]["offset"])
    assert result.json_lines() == lines[5:]


def test_logs_with_a_malformed_offset_exits_65(tmp_path):
    run_id = flue(tmp_path, "start", "cli-greet", *GREET).json_lines()[0]["runId"]
    result = flue(tmp_path, "logs", run_id, "--offset", "yesterday")
    assert result.code == Exit.REJECTED
    assert "flue: invalid_offset:" in result.stderr


def test_logs_of_an_unknown_run_exits_66(tmp_path):
    result = flue(tmp_path, "logs", "run_nope")
    assert result.code == Exit.NOT_FOUND
    assert result.stderr.startswith("flue: run_not_found: Run 'run_nope' was not found.")


def test_logs_as_text_prints_one_line_per_event_without_colours_when_piped(tmp_path):
    run_id = flue(tmp_path, "start", "cli-greet", *GREET).json_lines()[0]["runId"]
    result = flue(tmp_path, "logs", run_id, "--format", "text")
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and "\x1b[" not in result.stdout
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} queued\s+cli-greet  input=\{\"name\":\"ada\",\"steps\":2\}$", lines[0])
    assert lines[3].split(None, 2)[1:] == ["progress", "[████████████░░░░░░░░░░░░] 1/2  50%  step 1"]
    assert re.search(r'end\s+✔ completed in \d+\.\d\d s  result \{"greeting":"hello ada"\}$', lines[-1])


# -- the terminal view ----------------------------------------------------------------------------------


def test_on_a_terminal_start_shows_colours_a_progress_bar_and_a_final_status_line(tmp_path):
    result = flue_on_terminal(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", '{"name": "ada", "steps": 4}', "-f")
    assert result.code == Exit.COMPLETED, result.stderr
    screen = result.stdout
    assert not screen.lstrip().startswith("{")  # a live view, not NDJSON
    assert "\x1b[33mwarning" in screen and "\x1b[34minfo" in screen and "\x1b[35mgreeted" in screen
    assert "\r\x1b[2K\x1b[36m[██████░░░░░░░░░░░░░░░░░░] 1/4  25%  step 1" in screen  # drawn in place
    assert "4/4 100%  step 4" in screen
    last = screen.rstrip("\r\n").rsplit("\r\n", 1)[-1]
    assert "\x1b[32mend" in last and "✔ completed in" in last and 'result {"greeting":"hello ada"}' in last


def test_on_a_terminal_start_without_follow_shows_only_progress_and_the_final_status(tmp_path):
    result = flue_on_terminal(tmp_path, "start", "cli-greet", *GREET)
    lines = [line for line in result.stdout.split("\r\n") if line.strip()]
    assert "admitted" in lines[0]
    assert "greeted" not in result.stdout and "progress" not in result.stdout
    assert "✔ completed" in lines[-1]


def test_no_color_turns_colours_off_on_a_terminal(tmp_path):
    result = flue_on_terminal(tmp_path, "start", "cli-greet", *GREET, "-f", env=flue_env(tmp_path, NO_COLOR="1"))
    assert "\x1b[3" not in result.stdout and "✔ completed" in result.stdout


def test_format_ndjson_wins_on_a_terminal(tmp_path):
    result = flue_on_terminal(tmp_path, "start", "cli-greet", *GREET, "-f", "--format", "ndjson")
    assert [json.loads(line)["type"] for line in result.stdout.split("\r\n") if line][-1] == "run_end"


# -- runs ---------------------------------------------------------------------------------------------


@pytest.fixture
def three_runs(tmp_path) -> list[str]:
    """Run ids newest first: a failed run between two completed ones."""
    ids = [
        flue(tmp_path, "start", "cli-greet", *GREET).json_lines()[0]["runId"],
        flue(tmp_path, "start", "cli-fail", "--app", "cli_app").json_lines()[0]["runId"],
        flue(tmp_path, "start", "cli-greet", *GREET).json_lines()[0]["runId"],
    ]
    return ids[::-1]


def test_runs_lists_records_newest_first_as_ndjson(tmp_path, three_runs):
    result = flue(tmp_path, "runs")
    assert result.code == Exit.COMPLETED
    records = result.json_lines()
    assert [r["runId"] for r in records] == three_runs
    assert [r["status"] for r in records] == ["completed", "failed", "completed"]


def test_runs_filters_by_workflow_and_status(tmp_path, three_runs):
    assert [r["runId"] for r in flue(tmp_path, "runs", "--workflow", "cli-fail").json_lines()] == [three_runs[1]]
    assert [r["runId"] for r in flue(tmp_path, "runs", "--status", "completed").json_lines()] == [three_runs[0], three_runs[2]]


def test_runs_pages_with_limit_and_the_cursor_it_prints(tmp_path, three_runs):
    first = flue(tmp_path, "runs", "--limit", "2")
    cursor = re.search(r"--cursor (\S+)", first.stderr).group(1)
    second = flue(tmp_path, "runs", "--limit", "2", "--cursor", cursor)
    assert [r["runId"] for r in first.json_lines() + second.json_lines()] == three_runs
    assert "--cursor" not in second.stderr


def test_runs_as_text_is_a_table(tmp_path, three_runs):
    lines = flue(tmp_path, "runs", "--format", "text").stdout.splitlines()
    assert lines[0].split() == ["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION"]
    assert lines[2].split()[:3] == [three_runs[1], "cli-fail", "failed"]


def test_runs_with_a_cursor_it_did_not_print_exits_65(tmp_path):
    result = flue(tmp_path, "runs", "--cursor", "bogus")
    assert result.code == Exit.REJECTED and "flue: invalid_cursor:" in result.stderr


# -- the command line itself (in process) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["logs"],
        ["runs", "--status", "lost"],
        ["runs", "--limit", "many"],
        ["logs", "run_x", "--header", "X-Token: 1"],  # headers go to servers only
        ["logs", "run_x", "--url", "http://127.0.0.1:9", "--header", "no colon"],
        ["logs", "run_x", "--url", "http://127.0.0.1:9", "-H", "X-A: 1", "-H", "x-a: 2"],
        ["logs", "run_x", "--url", "http://127.0.0.1:9", "-H", "Accept: text/plain"],
        ["logs", "run_x", "--url", "http://127.0.0.1:9", "--store", "sqlite:///x.db"],
        ["logs", "run_x", "--url", "ftp://example.com"],
        ["start", "wf", "--url", "http://127.0.0.1:9", "--detach", "--follow"],
        ["serve", "not-an-import-string"],
    ],
)
def test_usage_errors_exit_64_with_the_usage_error_code(argv, capsys, monkeypatch):
    monkeypatch.delenv("FLUE_URL", raising=False)
    assert main(argv) == Exit.USAGE
    assert capsys.readouterr().err.startswith("flue: usage_error: ")


@pytest.mark.parametrize("text", ["NaN", '{"x": Infinity}', "[" * 100_000 + "]" * 100_000])
def test_input_json_cannot_carry_is_a_usage_error(text, tmp_path, capsys):
    (tmp_path / "input.json").write_text(text)
    assert main(["start", "wf", "--input", f"@{tmp_path / 'input.json'}"]) == Exit.USAGE
    assert capsys.readouterr().err.startswith("flue: usage_error: The input from ")


@pytest.mark.parametrize("text", ['{"name": "\\ud800"}', '{"name": "ada", "steps": 1e400}', '{"name": "\\udfff ada"}'])
def test_start_with_parsed_input_a_run_cannot_carry_exits_65_and_creates_no_run(text, tmp_path):
    result = flue(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", text)
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: input_not_json: ")
    assert flue(tmp_path, "runs", "--format", "ndjson").stdout == ""


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "Exit codes:" in capsys.readouterr().out


def test_an_argparse_error_is_never_exit_2_which_means_cancelled(capsys):
    assert main(["runs", "--bogus"]) == Exit.USAGE
    assert os.EX_USAGE == Exit.USAGE


def test_a_reader_that_goes_away_stops_the_command_quietly_with_141(tmp_path):
    # ~5000 lines: far more than a pipe holds, so the write after `head` left fails
    run_id = flue(tmp_path, "start", "cli-chatty", "--app", "cli_app", "--input", '{"n": 5000}').json_lines()[0]["runId"]
    done = subprocess.run(
        f"'{FLUE}' logs {run_id} | head -n 1; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", cwd=tmp_path, env=flue_env(tmp_path), capture_output=True, text=True, timeout=30,
    )
    assert json.loads(done.stdout)["type"] == "run_queued"
    assert done.returncode == Exit.BROKEN_PIPE
    assert done.stderr == ""


def test_every_exit_code_is_documented_in_the_cli_reference():
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    table = docs.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.M) for code in row.split("/")}
    assert documented == {int(code) for code in Exit} | {143}


# -- cancel -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_stops_a_run_another_process_executes_and_prints_its_record(tmp_path):
    gate = tmp_path / "gate"  # never opened: only the cancel ends the run
    async with local_runtime(tmp_path) as runtime:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        result = await flue_async(tmp_path, "cancel", receipt.run_id)
        record = await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
    assert result.code == Exit.COMPLETED, result.stderr
    assert record.status == "cancelled"
    assert result.json_lines()[0]["runId"] == receipt.run_id
    assert result.json_lines()[0]["status"] in ("cancelled", "running")


@pytest.mark.anyio
async def test_cancel_of_a_run_that_completed_exits_65_run_finished(tmp_path):
    run_id = flue(tmp_path, "start", "cli-greet", *GREET).json_lines()[0]["runId"]
    result = await flue_async(tmp_path, "cancel", run_id)
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: run_finished: ")


def test_cancel_of_an_unknown_run_exits_66(tmp_path):
    result = flue(tmp_path, "cancel", "run_unknown")
    assert result.code == Exit.NOT_FOUND
    assert result.stderr.startswith("flue: run_not_found: ")

"""``flue replay`` and ``flue runs export``: the real entry point on a SQLite store in ``tmp_path``."""

from __future__ import annotations

import json

import pytest

from cli_support import flue, flue_env, store_url
from flue_core.cli.exits import Exit
from test_replay import stored_runs

pytestmark = pytest.mark.anyio

DEPLOYED = "from replay_app import version\norder, ship, ship_express = version()\n"
RENAMED = "from replay_app import version\norder, ship, ship_express = version(reserve='hold')\n"


@pytest.fixture
async def runs(tmp_path, anyio_backend):
    (tmp_path / "deployed.py").write_text(DEPLOYED)
    (tmp_path / "renamed.py").write_text(RENAMED)
    return await stored_runs(store_url(tmp_path))


def test_replay_of_the_deployed_code_exits_0(runs, tmp_path):
    result = flue(tmp_path, "replay", "--app", "deployed", "--format", "text")
    assert result.code == Exit.COMPLETED, result.stderr
    assert result.stdout.splitlines()[-1].startswith("checked 8 run(s) (2 unfinished) from sqlite:///")
    assert result.stdout.rstrip().endswith("no divergence")


def test_replay_reports_each_diverging_run_and_exits_1(runs, tmp_path):
    result = flue(tmp_path, "replay", "--app", "renamed", "--unfinished", "--format", "text")
    assert result.code == Exit.FAILED
    lines = result.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[:-1]) == sorted([runs["waiting"], runs["sleeping"]])
    assert "call_mismatch: at position 2 the history holds step 'reserve'; the new code asked for step 'hold'" in lines[0]
    assert lines[-1].endswith("2 diverge")


def test_replay_as_ndjson_prints_one_line_per_run(runs, tmp_path):
    result = flue(tmp_path, "replay", runs["waiting"], runs["done"], "--app", "renamed")
    assert result.code == Exit.FAILED
    lines = {line["runId"]: line for line in result.json_lines()}
    assert lines[runs["waiting"]]["divergence"]["position"] == 2
    assert lines[runs["done"]]["divergence"]["asked"] == "step 'hold'"
    assert "flue: checked 2 run(s)" in result.stderr


def test_export_then_replay_from_the_file(runs, tmp_path):
    exported = flue(tmp_path, "runs", "export", "--unfinished", "-o", "h.jsonl")
    assert exported.code == Exit.COMPLETED
    assert exported.stderr.strip() == "flue: exported 2 run histories to h.jsonl"
    header = json.loads((tmp_path / "h.jsonl").read_text().splitlines()[0])
    assert (header["flue"], header["version"]) == ("run-histories", 1)
    env = flue_env(tmp_path, FLUE_STORE="sqlite:///nowhere/else.db")
    result = flue(tmp_path, "replay", "--app", "renamed", "--from", "h.jsonl", "--format", "text", env=env)
    assert result.code == Exit.FAILED
    assert result.stdout.splitlines()[-1] == "checked 2 run(s) (2 unfinished) from h.jsonl: 2 diverge"


def test_replay_and_export_keep_the_workflows_named(runs, tmp_path):
    result = flue(tmp_path, "replay", "--app", "deployed", "--workflow", "ship", "--format", "text")
    assert result.stdout.splitlines()[-1].startswith("checked 3 run(s) (0 unfinished)")
    exported = flue(tmp_path, "runs", "export", "--workflow", "ship")
    assert {json.loads(line)["run"]["workflow"] for line in exported.stdout.splitlines()[1:]} == {"ship"}


def test_export_to_standard_output(runs, tmp_path):
    result = flue(tmp_path, "runs", "export", runs["done"])
    head, line = result.stdout.splitlines()
    assert json.loads(line)["run"]["runId"] == runs["done"]


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "run_x", "--unfinished", "--app", "deployed"),
        ("replay", "--store", "sqlite:///a.db", "--from", "h.jsonl", "--app", "deployed"),
        ("runs", "run_x"),
        ("runs", "export", "--url", "http://127.0.0.1:1"),
    ],
)
def test_contradictory_options_are_usage_errors(runs, tmp_path, args):
    assert flue(tmp_path, *args).code == Exit.USAGE


def test_replay_without_the_new_code_is_a_configuration_error(runs, tmp_path):
    result = flue(tmp_path, "replay")
    assert result.code == Exit.CONFIG
    assert "--app" in result.stderr


def test_a_run_not_in_the_store_exits_66(runs, tmp_path):
    assert flue(tmp_path, "replay", "run_missing", "--app", "deployed").code == Exit.NOT_FOUND


def test_a_file_of_another_format_exits_78(runs, tmp_path):
    (tmp_path / "h.jsonl").write_text('{"flue": "run-histories", "version": 2}\n')
    result = flue(tmp_path, "replay", "--app", "deployed", "--from", "h.jsonl")
    assert result.code == Exit.CONFIG
    assert "flue: history_unsupported:" in result.stderr

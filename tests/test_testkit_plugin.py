"""The pytest plugin the package registers: flue_env in a project of its own, configured by the
flue_workflows fixture and the flue marker, with no anyio set-up of the project's own."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

APP = '''
from flue_core import RunContext, workflow

async def greet(name):
    return f"hello {name}"

@workflow(name="greeter")
async def greeter(ctx: RunContext, input: dict) -> str:
    await ctx.sleep(7 * 86400)
    return await ctx.step("greet", greet, input["name"])
'''

TESTS = '''
from datetime import UTC, datetime
import pytest
import app

@pytest.fixture
def flue_workflows():
    return [app.greeter]

async def test_a_week_long_run_in_a_fixture(flue_env):
    flue_env.steps.double("greet", "hi")
    run = await flue_env.start("greeter", {"name": "ada"})
    assert await flue_env.result(run) == "hi"

@pytest.mark.flue(start=datetime(2030, 1, 1, tzinfo=UTC), auto_skip=False)
async def test_the_marker_configures_the_environment(flue_env):
    assert flue_env.now() == datetime(2030, 1, 1, tzinfo=UTC)
    run = await flue_env.start("greeter", {"name": "bo"})
    await flue_env.advance(days=7)
    assert await flue_env.result(run) == "hello bo"

@pytest.mark.flue(workflows="app")
async def test_the_marker_names_workflows_by_module(flue_env):
    assert [wf.name for wf in flue_env.runtime.registry] == ["greeter"]
'''

NO_WORKFLOWS = '''
async def test_needs_workflows(flue_env):
    pass
'''


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_flue_env_runs_a_projects_workflow_tests(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "test_app.py").write_text(textwrap.dedent(TESTS))
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # anyio runs each test on every backend installed (asyncio, and trio where it is): 3 tests each
    assert re.search(r"\b(3|6) passed", result.stdout), result.stdout


def test_flue_env_without_workflows_says_how_to_give_them(tmp_path):
    (tmp_path / "test_none.py").write_text(textwrap.dedent(NO_WORKFLOWS))
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "override the flue_workflows fixture" in result.stdout

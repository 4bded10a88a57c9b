"""docs/testing.md's examples, run as the project they make up: each ``python`` block headed
``# <file>.py`` is a file of it, each ``sh`` block headed ``# <file>.sh`` a script. pytest runs the
project's tests, Python its example that is no test, bash its CI script (against a snapshot of runs
the approval workflow left waiting, exported as `flue runs export` would)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "testing.md"
BLOCK = re.compile(r"```(python|sh)\n# ([\w./-]+\.(?:py|sh))\n(.*?)```", re.S)
BIN = Path(sys.executable).parent

SNAPSHOT = '''
import anyio
from approvals import expense_approval
from flue_core import replay
from flue_core.testkit import TestEnvironment

async def main():
    async with TestEnvironment([expense_approval]) as env:
        env.steps.double("notify", {"queued": True})
        for employee in ("ada", "bo", "cy"):
            await env.start(expense_approval, {"employee": employee, "amount": 10})
        await replay.export("histories/production.jsonl", store=env.runtime.target.store, unfinished=True)

anyio.run(main)
'''


def example_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for _, name, body in BLOCK.findall(DOC.read_text()):
        assert name not in files, f"docs/testing.md has two examples named {name}"
        files[name] = f"# {name}\n{body}"
    return files


def run(project: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs-testing")
    for name, text in example_files().items():
        (root / name).write_text(text)
    (root / "histories").mkdir()
    made = run(root, sys.executable, "-c", SNAPSHOT)
    assert made.returncode == 0, made.stderr
    return root


def test_the_guide_has_the_examples_the_issue_asks_for():
    files = example_files()
    tests = {name for name in files if name.startswith("test_")}
    assert {"test_approval.py", "test_retries.py", "test_albums.py", "test_deploy.py"} <= tests
    assert "ci.sh" in files and "by_hand.py" in files


def test_the_examples_tests_pass(project):
    expected = sum(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for name, text in example_files().items()
        if name.startswith("test_")
        for node in ast.parse(text).body
    )
    result = run(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout


def test_the_example_without_pytest_runs(project):
    result = run(project, sys.executable, "by_hand.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{'status': 'expired'")


def test_the_ci_script_passes_on_the_snapshot(project):
    result = run(project, "bash", "-e", "ci.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 3 run(s) (3 unfinished) from histories/production.jsonl: no divergence" in result.stdout + result.stderr

"""The example application (``./scripts/example``): it runs, and its dashboard link shows its runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

EXAMPLE = Path(__file__).parent.parent / "examples" / "scheduler.py"


def test_the_example_prints_a_dashboard_link_that_shows_its_runs_live(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--runs", "2", "--every", "1.5", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        link = process.stdout.readline().removeprefix("dashboard: ").strip()
        started = process.stdout.readline()
        while not started.startswith("started "):
            started = process.stdout.readline()
        run_id = started.split()[1]
        with httpx.Client(follow_redirects=True) as browser:
            assert browser.get(link).status_code == 200
            base = link.split("/dashboard/")[0]
            assert run_id in [run["runId"] for run in browser.get(f"{base}/runs").json()["runs"]]
            assert browser.get(f"{base}/dashboard/runs/{run_id}").status_code == 200
        process.stdout.read()
        assert process.wait(timeout=30) == 0  # --runs 2: it stops by itself
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / ".flue" / "flue.db").exists()

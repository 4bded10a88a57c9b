"""Running the official Durable Streams conformance suite (``scripts/conformance``) against a server
and judging its report: shared by the tests of every stream backend."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from flue_core.streams.conformance import SKIPPED

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}


def conformance_command(url: str, report: Path) -> list[str]:
    """The command that runs the suite against the stream server at ``url``, writing ``report``.
    Fails (never skips) when node or npm is missing."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"The conformance suite needs node >= 20 and npm; missing: {', '.join(missing)}."
    script = str(ROOT / "scripts" / "conformance")
    return [script, url, "--reporter=default", "--reporter=json", f"--outputFile.json={report}"]


def check_report(label: str, report: Path, output: str, returncode: int) -> None:
    """Every test of the suite passed but the :data:`SKIPPED` ones."""
    assert report.exists(), f"vitest wrote no report (exit {returncode}):\n{output[-4000:]}"
    summary = json.loads(report.read_text())
    failed = [
        " > ".join([*test["ancestorTitles"], test["title"]])
        for suite in summary["testResults"]
        for test in suite["assertionResults"]
        if test["status"] == "failed"
    ]
    print(
        f"{label}: {summary['numPassedTests']} passed, {summary['numFailedTests']} failed,"
        f" {summary['numPendingTests'] + summary['numTodoTests']} skipped of {summary['numTotalTests']}"
    )
    assert failed == [], "\n".join(failed) + "\n\n" + output[-4000:]
    assert summary["numPendingTests"] + summary["numTodoTests"] == SKIPPED
    assert summary["numPassedTests"] == summary["numTotalTests"] - SKIPPED > 300
    assert returncode == 0

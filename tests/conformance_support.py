"""Running the official Durable Streams conformance suite (``scripts/conformance``) against a server
and judging its report: shared by the tests of every stream backend."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flue_core.streams.conformance import SKIPPED, read_report

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
    result = read_report(report, output, returncode)
    print(f"{label}: {result.summary}")
    result.check(SKIPPED)
    assert result.passed > 300

"""The official Durable Streams conformance suite, for the tests of any stream server or backend:
:func:`run_conformance`.

The suite is ``@durable-streams/server-conformance-tests``, pinned with vitest in ``suite/`` beside
this module (``package.json``, ``package-lock.json`` and the one test file that runs it). On first use
its packages are installed with ``npm ci`` in a copy of that folder under ``$FLUE_CONFORMANCE_DIR``,
else ``$XDG_CACHE_HOME/flue`` or ``~/.cache/flue`` (never inside Flue's package, which ships as it is),
and again whenever the lock file changes. It needs node >= 20 and npm; without them
:func:`run_conformance` raises :class:`ConformanceUnavailable`, so a test fails rather than skips::

    from flue_core.http import serve
    from flue_core.streams import ReadOptions
    from flue_core.streams.conformance import run_conformance
    from flue_core.streams.server import streams_app

    async def test_the_official_conformance_suite_passes(tmp_path):
        streams = streams_app(MyStreamStore(...), read_options=ReadOptions(long_poll_timeout=2.0), open_store=False)
        async with streams.state.streams, serve(streams) as url:
            report = await run_conformance(url)
        report.check()

The suite waits for long-poll timeouts within its 5 s test timeout: serve it with a
``long_poll_timeout`` of about 2 s, as above. ``scripts/conformance URL`` runs the same suite from a
shell.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import anyio

__all__ = [
    "SKIPPED",
    "SUITE",
    "ConformanceReport",
    "ConformanceUnavailable",
    "read_report",
    "run_conformance",
    "suite_directory",
]

#: The pinned suite: ``package.json``, ``package-lock.json`` and ``conformance.test.mjs``.
SUITE = Path(__file__).with_name("suite")
#: Tests the suite runs only for servers with its optional subscription APIs, which Flue's server lacks.
SKIPPED = 6
_FILES = ("package.json", "package-lock.json", "conformance.test.mjs")
_STAMP = Path("node_modules") / ".flue-installed"


class ConformanceUnavailable(RuntimeError):
    """node or npm is missing, or the suite's packages could not be installed (the message says why)."""


@dataclass(frozen=True)
class ConformanceReport:
    """What one run of the suite found. ``failed`` names each failed test (``describe > ... > test``)."""

    passed: int
    skipped: int
    total: int
    failed: list[str] = field(default_factory=list)
    returncode: int = 0
    output: str = ""

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {len(self.failed)} failed, {self.skipped} skipped of {self.total}"

    def check(self, skipped: int = SKIPPED) -> None:
        """Assert that every test passed but the ``skipped`` optional ones (``AssertionError`` listing
        the failures and the end of the suite's output otherwise)."""
        problems = "\n".join(self.failed) + "\n\n" + self.output[-4000:]
        assert not self.failed, f"{self.summary}:\n{problems}"
        assert self.skipped == skipped, f"{self.summary}: expected {skipped} skipped\n{self.output[-4000:]}"
        assert self.passed == self.total - skipped > 0 and self.returncode == 0, f"{self.summary}\n{self.output[-4000:]}"


def suite_directory() -> Path:
    """The folder the suite runs in, its packages installed (see the module docstring)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise ConformanceUnavailable(f"The conformance suite needs node >= 20 and npm; {tool!r} is not installed.")
    wanted = hashlib.sha1((SUITE / "package-lock.json").read_bytes()).hexdigest()
    folder = cache_root() / f"conformance-{wanted[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        if not (folder / name).exists() or (folder / name).read_bytes() != (SUITE / name).read_bytes():
            shutil.copyfile(SUITE / name, folder / name)
    stamp = folder / _STAMP
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ConformanceUnavailable(f"npm ci of the conformance suite failed:\n{done.stderr[-4000:]}")
        stamp.write_text(wanted + "\n")
    return folder


def cache_root() -> Path:
    """Where the suite's packages are installed: ``$FLUE_CONFORMANCE_DIR``, else ``flue`` in the user's
    cache folder (``$XDG_CACHE_HOME``, ``~/.cache``) — never inside Flue's own package."""
    configured = os.environ.get("FLUE_CONFORMANCE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flue"


def conformance_command(report: Path, folder: Path) -> list[str]:
    """The command that runs the suite (installed in ``folder``) against the stream server at
    ``$DS_URL``, writing vitest's JSON report to ``report``."""
    vitest = folder / "node_modules" / ".bin" / "vitest"
    return [str(vitest), "run", "conformance.test.mjs", "--reporter=default", "--reporter=json", f"--outputFile.json={report}"]


async def run_conformance(base_url: str) -> ConformanceReport:
    """Run the whole suite against the Durable Streams server at ``base_url`` (its base path, such as
    ``http://127.0.0.1:8000/streams``, served by the caller meanwhile) and report what it found."""
    folder = await anyio.to_thread.run_sync(suite_directory)
    with tempfile.TemporaryDirectory(prefix="flue-conformance-") as scratch:
        report = Path(scratch) / "report.json"
        env = {**os.environ, "DS_URL": base_url, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        done = await anyio.run_process(
            conformance_command(report, folder), cwd=folder, env=env, check=False,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return read_report(report, done.stdout.decode(errors="replace"), done.returncode)


def read_report(report: Path, output: str = "", returncode: int = 0) -> ConformanceReport:
    """What vitest's JSON ``report`` of a run of the suite says (``output``: what the run printed)."""
    if not report.exists():
        raise ConformanceUnavailable(f"vitest wrote no report (exit {returncode}):\n{output[-4000:]}")
    summary = json.loads(report.read_text())
    failed = [
        " > ".join([*test["ancestorTitles"], test["title"]])
        for suite in summary["testResults"]
        for test in suite["assertionResults"]
        if test["status"] == "failed"
    ]
    return ConformanceReport(
        passed=summary["numPassedTests"],
        skipped=summary["numPendingTests"] + summary["numTodoTests"],
        total=summary["numTotalTests"],
        failed=failed,
        returncode=returncode,
        output=output,
    )

"""``flue worker`` as a process of its own, for the multi-process tests: started once it says it is
executing, stopped with SIGTERM at the end (or left dead, if the test killed it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@contextmanager
def flue_worker(app: str, url: str, *options: str) -> Iterator[subprocess.Popen[str]]:
    """A ``flue worker APP --store URL OPTIONS...`` process, ``APP`` a module of this folder."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flue_core.cli", "worker", app, "--store", url, *options],
        cwd=TESTS,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert "executing" in banner, f"the worker did not start: {banner}{process.stderr.read()}"
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

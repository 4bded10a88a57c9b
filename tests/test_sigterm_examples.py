"""SIGTERM stops the programs of ``examples/`` (``./scripts/example``'s among them) as Ctrl-C does:
gracefully, exit 0, their exit handlers run, no run left ``running`` in the store."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Runs an example as ``python examples/NAME ARGS`` would, with an exit handler of the test's.
WITH_EXIT_HANDLER = """
import atexit, runpy, sys
from pathlib import Path
atexit.register(Path(sys.argv[1]).write_text, "exit handlers ran")
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [status for (status,) in conn.execute("SELECT status FROM flue_runs")]


# Each example with its arguments and the output line that says it is under way (a run executing).
UNDER_WAY = {
    "scheduler.py": (["--every", "0.3", "--port", "0"], "step"),
    "approval.py": (["--port", "{port}"], "is waiting for a decision"),
    "nightly.py": ([], "waiting for ticks"),
}


@pytest.mark.parametrize("name", list(UNDER_WAY))
def test_sigterm_stops_an_example_gracefully_with_its_exit_handlers_run(tmp_path, name):
    args, under_way = UNDER_WAY[name]
    args = [arg.format(port=free_port()) for arg in args]
    exited, db = tmp_path / "exited", tmp_path / "flue.db"
    env = {**os.environ, "FLUE_STORE": f"sqlite:///{db}", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_EXIT_HANDLER, str(exited), str(EXAMPLES / name), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        while under_way not in line:
            assert line, "the example stopped by itself"
            line = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        process.stdout.read()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert exited.read_text() == "exit handlers ran"
    assert "running" not in statuses(db)

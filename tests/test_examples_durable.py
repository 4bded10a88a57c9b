"""The examples of the durable-waits guides run as written: fan-out/fan-in, the approval flow over
HTTP, the nightly schedule."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fan_out_gathers_every_childs_result(tmp_path):
    done = run(tmp_path, "fan_out.py")
    assert done.returncode == 0, done.stderr
    assert "result: {'resized': 5, 'bytes': 5055}" in done.stdout
    assert done.stdout.count("(completed)") == 5


def test_the_approval_flow_waits_for_the_signal_sent_over_http(tmp_path):
    done = run(tmp_path, "approval.py", "--approve", "--port", str(free_port()))
    assert done.returncode == 0, done.stderr
    assert "is waiting for a decision" in done.stdout and "curl -X POST" in done.stdout
    assert "result: {'status': 'approved', 'by': 'grace'}" in done.stdout


def test_the_nightly_example_creates_its_schedule_and_stops_on_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "nightly.py")], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("nightly-report: 0 2 * * * (Europe/Berlin) → nightly-report, active")
        assert process.stdout.readline().startswith("waiting for ticks")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()

"""The official Durable Streams conformance suite against the Worker on a real workerd: general
streams served from their Durable Object (``FlueApp(streams=True)``) through the Worker — the same
read side (catch-up, long-poll, SSE, offsets, ETags) run streams are served with from theirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conformance_support import ENV, check_report, conformance_command
from flue_cloudflare.devtools import LocalWorker


def test_the_official_conformance_suite_passes_on_durable_objects(runs_worker: LocalWorker, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    command = conformance_command(f"{runs_worker.url}/streams", report)
    result = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, check=False, timeout=600
    )
    check_report("durable objects", report, result.stdout.decode(errors="replace"), result.returncode)

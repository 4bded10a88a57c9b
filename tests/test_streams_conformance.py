"""The official Durable Streams conformance suite (``@durable-streams/server-conformance-tests``,
pinned in ``tests/conformance``) against the stream server on each built-in store.

The server is mounted under ``/streams`` of a host app and served by uvicorn on 127.0.0.1;
``scripts/conformance`` installs the pinned node packages and runs vitest against it. The test fails
— it does not skip — when node or npm is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from flue_core.http import serve
from flue_core.streams import ReadOptions
from flue_core.streams.server import streams_app
from flue_node_like.streams_memory import MemoryStreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: Tests the suite runs only for servers with the reserved subscription APIs, which this one lacks.
SKIPPED = 6


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "redis":
        return RedisStreamStore(request.getfixturevalue("redis_url"))
    return MemoryStreamStore() if kind == "memory" else SqliteStreamStore(tmp_path / "streams.db")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_the_official_conformance_suite_passes(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"The conformance suite needs node >= 20 and npm; missing: {', '.join(missing)}."
    store = make_store(kind, request, tmp_path)
    # Long-polls answer 204 after 2 s: the suite waits for such timeouts within its 5 s test timeout.
    streams = streams_app(store, open_store=False, read_options=ReadOptions(long_poll_timeout=2.0))
    host = Starlette(routes=[Mount("/streams", app=streams)])
    report = tmp_path / "report.json"
    async with streams.state.streams, serve(host, timeout_graceful_shutdown=1) as url:
        result = await anyio.run_process(
            [str(ROOT / "scripts" / "conformance"), f"{url}/streams", "--reporter=default", "--reporter=json",
             f"--outputFile.json={report}"],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
        )
    output = result.stdout.decode(errors="replace")
    assert report.exists(), f"vitest wrote no report (exit {result.returncode}):\n{output[-4000:]}"
    summary = json.loads(report.read_text())
    failed = [
        " > ".join([*test["ancestorTitles"], test["title"]])
        for suite in summary["testResults"]
        for test in suite["assertionResults"]
        if test["status"] == "failed"
    ]
    print(
        f"{kind}: {summary['numPassedTests']} passed, {summary['numFailedTests']} failed,"
        f" {summary['numPendingTests'] + summary['numTodoTests']} skipped of {summary['numTotalTests']}"
    )
    assert failed == [], "\n".join(failed) + "\n\n" + output[-4000:]
    assert summary["numPendingTests"] + summary["numTodoTests"] == SKIPPED
    assert summary["numPassedTests"] == summary["numTotalTests"] - SKIPPED > 300
    assert result.returncode == 0

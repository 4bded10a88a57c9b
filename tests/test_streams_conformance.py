"""The official Durable Streams conformance suite (``@durable-streams/server-conformance-tests``,
pinned in ``tests/conformance``) against the stream server on each built-in store: memory and SQLite
on their own, Redis as a deployment serves it — ``create_app`` over a runtime whose runs are in Redis.

The server is mounted under ``/streams`` of a host app and served by uvicorn on 127.0.0.1;
``scripts/conformance`` installs the pinned node packages and runs vitest against it. The test fails
— it does not skip — when node or npm is missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from conformance_support import ENV, check_report, conformance_command
from flue_core import Runtime
from flue_core.http import create_app, serve
from flue_core.streams import ReadOptions
from flue_core.streams.server import streams_app
from flue_node_like.streams_memory import MemoryStreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore

pytestmark = pytest.mark.anyio


def make_store(kind: str, tmp_path: Path) -> Any:
    return MemoryStreamStore() if kind == "memory" else SqliteStreamStore(tmp_path / "streams.db")


#: Long-polls answer 204 after 2 s: the suite waits for such timeouts within its 5 s test timeout.
READS = ReadOptions(long_poll_timeout=2.0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_official_conformance_suite_passes(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    streams = streams_app(store, open_store=False, read_options=READS)
    host = Starlette(routes=[Mount("/streams", app=streams)])
    async with streams.state.streams, serve(host, timeout_graceful_shutdown=1) as url:
        await passes_conformance(kind, f"{url}/streams", tmp_path)


async def test_the_official_conformance_suite_passes_on_an_app_whose_runs_and_streams_are_in_redis(
    redis_url: str, tmp_path: Path
) -> None:
    runtime = Runtime([], store=redis_url)
    app = create_app(runtime, streams=RedisStreamStore(redis_url), stream_options=READS)
    async with runtime, app.state.streams, serve(app, timeout_graceful_shutdown=1) as url:
        await passes_conformance("app on redis", f"{url}/streams", tmp_path)


async def passes_conformance(kind: str, base_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = await anyio.run_process(
        conformance_command(base_url, report), check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV
    )
    check_report(kind, report, result.stdout.decode(errors="replace"), result.returncode)

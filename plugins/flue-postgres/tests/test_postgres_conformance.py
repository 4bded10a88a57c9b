"""The official Durable Streams conformance suite against an app whose runs and general streams are in
Postgres, run as docs/backends.md tells a third party to (:func:`flue_core.streams.conformance.run_conformance`).
It needs node and npm, and fails — never skips — without them."""

from __future__ import annotations

import pytest

from flue_core import Runtime
from flue_core.http import create_app, serve
from flue_core.streams import ReadOptions
from flue_core.streams.conformance import run_conformance
from flue_postgres import PostgresStreamStore

pytestmark = pytest.mark.anyio

#: Long-polls answer 204 after 2 s: the suite waits for such timeouts within its 5 s test timeout.
READS = ReadOptions(long_poll_timeout=2.0)


async def test_the_official_conformance_suite_passes_on_an_app_whose_runs_and_streams_are_in_postgres(
    postgres_url: str,
) -> None:
    runtime = Runtime([], store=postgres_url)
    app = create_app(runtime, streams=PostgresStreamStore(postgres_url), stream_options=READS)
    async with runtime, app.state.streams, serve(app, timeout_graceful_shutdown=1) as url:
        report = await run_conformance(f"{url}/streams")
    print(f"postgres: {report.summary}")
    report.check()

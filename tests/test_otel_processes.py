"""OpenTelemetry across process boundaries: a run executed by another process continues the caller's
trace, an HTTP caller's ``traceparent`` is continued by its run, the spans of a ``flue serve`` stopped
by SIGTERM are all exported, and Flue imports without OpenTelemetry."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware import Middleware

import otel_app
from cli_support import FLUE, flue_env
from flue_core import Runtime, runs, workflows
from flue_core.http import create_app
from flue_core.otel import FlueTelemetry
from flue_core.otel import spans as keys
from http_served import served
from otel_support import Telemetry, parent_id

pytestmark = pytest.mark.anyio


def exported(path: Path) -> list[dict[str, Any]]:
    """Spans the worker's ConsoleSpanExporter wrote, one JSON object a line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ids(span: dict[str, Any]) -> tuple[int, int, int | None]:
    """``(trace_id, span_id, parent_id)`` of an exported span."""
    context = span["context"]
    parent = span.get("parent_id")
    return int(context["trace_id"], 16), int(context["span_id"], 16), int(parent, 16) if parent else None


async def test_a_run_executed_in_another_process_continues_the_callers_trace(tmp_path):
    db, spans_file = tmp_path / "flue.db", tmp_path / "worker-spans.jsonl"
    telemetry = Telemetry()
    tracer = telemetry.tracer_provider.get_tracer("test")
    worker = subprocess.Popen(
        [sys.executable, otel_app.__file__, str(db), str(spans_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        # This process only admits (execute=False): the worker, on the same SQLite file, executes.
        target = otel_app.target(str(db), execute=False)
        async with Runtime(otel_app.WORKFLOWS, target=target, plugins=[telemetry.plugin]):
            with tracer.start_as_current_span("caller"):
                receipt = await workflows.start(otel_app.sleeper, input={"seconds": 0.3})
            with anyio.fail_after(20):
                assert await runs.result(receipt.run_id) == "rested"
        assert worker.stdin is not None
        worker.stdin.close()  # the worker closes its runtime and exits, its spans exported
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    caller, admit = telemetry.one("caller"), telemetry.one("admit otel-sleeper")
    assert telemetry.named("execute otel-sleeper") == []  # nothing executed here
    spans = exported(spans_file)
    executions = sorted((span for span in spans if span["name"] == "execute otel-sleeper"), key=lambda span: span["start_time"])
    assert len(executions) == 2  # before the sleep, and resumed after it
    for execution in executions:
        trace_id, _, parent = ids(execution)
        assert trace_id == caller.context.trace_id
        assert parent == admit.context.span_id
        assert execution["attributes"][keys.RUN_ID] == receipt.run_id
    assert [execution["attributes"][keys.RUN_STATUS] for execution in executions] == ["waiting", "completed"]
    assert [execution["attributes"][keys.EXECUTION_RESUMED] for execution in executions] == [False, True]
    steps = {span["name"]: ids(span) for span in spans if span["name"].startswith("step ")}
    assert steps["step before"][2] == ids(executions[0])[1]
    assert steps["step after"][2] == ids(executions[1])[1]


async def test_an_http_callers_traceparent_is_continued_by_the_run(tmp_path):
    telemetry = Telemetry()
    trace_id, caller_span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    traceparent = f"00-{trace_id:032x}-{caller_span_id:016x}-01"
    middleware = [Middleware(OpenTelemetryMiddleware, tracer_provider=telemetry.tracer_provider)]
    make_target = lambda: otel_app.target(str(tmp_path / "flue.db"))  # noqa: E731
    async with served(otel_app.WORKFLOWS, make_target, plugins=[telemetry.plugin], middleware=middleware) as (_, client):
        response = await client.post("/workflows/otel-fetch", json={"url": "a"}, headers={"traceparent": traceparent})
        assert response.status_code == 202
        run_id = response.json()["runId"]
        with anyio.fail_after(10):
            await runs.wait(run_id)
    request_span = next(span for span in telemetry.spans if span.kind == SpanKind.SERVER)  # the ASGI instrumentation's
    assert request_span.context.trace_id == trace_id and parent_id(request_span) == caller_span_id
    admit, execute = telemetry.one("admit otel-fetch"), telemetry.one("execute otel-fetch")
    assert {admit.context.trace_id, execute.context.trace_id, request_span.context.trace_id} == {trace_id}
    assert parent_id(admit) == request_span.context.span_id
    assert admit.attributes[keys.ADMISSION_SOURCE] == "http"
    assert parent_id(execute) == admit.context.span_id


SPANS_ENV = "OTEL_TEST_SPANS_FILE"


def exporting_app() -> Starlette:
    """``flue serve test_otel_processes:exporting_app --factory``: the otel app on ``FLUE_STORE``,
    its spans batched for a minute by the SDK, so that only the provider's exit handler (registered
    by the SDK, which flushes at shutdown) exports those of a short-lived server, to ``SPANS_ENV``."""
    out = open(os.environ[SPANS_ENV], "a", encoding="utf-8")  # noqa: SIM115 - the exporter's until exit
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    runtime = Runtime(otel_app.WORKFLOWS, plugins=[FlueTelemetry(tracer_provider=provider)])
    return create_app(runtime, open_runtime=True)


def test_the_spans_of_a_server_stopped_by_sigterm_are_all_exported(tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = flue_env(tmp_path, **{SPANS_ENV: str(spans_file)})
    args = ["serve", "test_otel_processes:exporting_app", "--factory", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen([str(FLUE), *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/runs/nothing")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "flue serve did not start"
                time.sleep(0.05)
        for n in range(6):
            assert httpx.post(f"{url}/workflows/otel-fetch", json={"url": str(n)}).status_code == 202
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0, server.stderr.read() if server.stderr else ""
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    admissions = [span for span in exported(spans_file) if span["name"] == "admit otel-fetch"]
    assert len(admissions) == 6


BLOCK_OPENTELEMETRY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Block())
"""


def test_flue_imports_and_runs_without_opentelemetry():
    check = BLOCK_OPENTELEMETRY + """
import flue_core, flue_core.http, flue_node_like
from flue_core import Runtime
Runtime([], store="memory://")
try:
    import flue_core.otel
except ImportError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "flue_core.otel needs OpenTelemetry: pip install 'flue[otel]'"

"""Workflows the OpenTelemetry tests trace, and a worker process that executes them.

Usage: python otel_app.py DB_PATH SPANS_FILE — executes runs from the SQLite file at DB_PATH, with
FlueTelemetry on a real SDK whose exporter writes each finished span to SPANS_FILE as a JSON line,
until its standard input closes.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from flue_core import RunContext, Runtime, workflow
from flue_core.otel import FlueTelemetry
from flue_node_like import LocalTarget, SqliteStore

#: What workflow code traces with; the tests point it at their provider.
app_tracer_provider: trace.TracerProvider = trace.NoOpTracerProvider()


def _fetch(url: str) -> dict[str, Any]:
    with app_tracer_provider.get_tracer("app").start_as_current_span("app fetch") as span:
        span.set_attribute("url", url)
    return {"url": url, "status": 200}


@workflow(name="otel-fetch", http=True)
async def fetch(ctx: RunContext, input: dict) -> dict:
    return await ctx.step("fetch", _fetch, input["url"])


def _boom() -> None:
    raise ValueError("the upstream said no")


@workflow(name="otel-failing")
async def failing(ctx: RunContext) -> None:
    await ctx.step("call upstream", _boom)


@workflow(name="otel-flaky", retries=1)
async def flaky(ctx: RunContext) -> int:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@workflow(name="otel-slow", timeout=0.1)
async def slow(ctx: RunContext) -> None:
    await anyio.sleep(10)


@workflow(name="otel-busy", retries=1)
async def busy(ctx: RunContext) -> None:
    ctx.emit("busy", {})
    await anyio.sleep(30)  # not a durable wait: the execution holds the run until it is cancelled


@workflow(name="otel-sleeper")
async def sleeper(ctx: RunContext, input: dict) -> str:
    await ctx.step("before", lambda: "before")
    await ctx.sleep(input["seconds"])
    await ctx.step("after", lambda: "after")
    return "rested"


@workflow(name="otel-child")
async def child(ctx: RunContext, input: int) -> int:
    return input * 2


@workflow(name="otel-parent")
async def parent(ctx: RunContext) -> int:
    receipt = await ctx.start_child(child, input=21)
    return await ctx.wait_for(receipt)


WORKFLOWS = [fetch, failing, flaky, slow, busy, sleeper, child, parent]


def target(db: str, *, execute: bool = True) -> LocalTarget:
    return LocalTarget(SqliteStore(db), sweep_interval=0.1, shutdown_grace=1.0, execute=execute)


async def work(db: str, spans_file: str) -> None:
    with open(spans_file, "a", encoding="utf-8") as out:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line)))
        async with Runtime(WORKFLOWS, target=target(db), plugins=[FlueTelemetry(tracer_provider=provider)]):
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes our standard input
        provider.shutdown()


def _one_line(span: Any) -> str:
    return span.to_json(indent=None) + "\n"


if __name__ == "__main__":
    anyio.run(work, sys.argv[1], sys.argv[2])

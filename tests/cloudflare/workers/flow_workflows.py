"""The workflows of the flow Worker (``flow_worker.py``): each has flow control and records, in its
result, when it started and ended as its object saw it."""

from __future__ import annotations

import time
from typing import Any

import anyio

from flue_core import RunContext, workflow
from flue_core.flow.policy import RateLimit


def reader(request: Any, run: Any = None) -> bool:
    return request.headers.get("x-reader") == "yes"


HTTP_OPTIONS = {
    "authorize_run_read": reader,
    "list_runs_enabled": True,
    "authorize_run_list": reader,
    "authorize_run_cancel": reader,
}


async def _work(seconds: float) -> dict[str, float]:
    began = time.time()
    await anyio.sleep(seconds)
    return {"began": began, "ended": time.time()}


@workflow(name="per-tenant", http=True, concurrency=1, concurrency_key="tenant")
async def per_tenant(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    return await _work(0.6)


@workflow(name="ranked", http=True, concurrency=1)
async def ranked(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    return await _work(input.get("hold", 0.05))


@workflow(name="paced", http=True, rate_limit=RateLimit(2, 1.0))
async def paced(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    return await _work(0.0)


@workflow(name="settled", http=True, debounce=1.0, debounce_key="topic")
async def settled(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    return input


@workflow(name="batched", http=True, debounce=1.0, debounce_key="topic", concurrency=1, concurrency_key="tenant")
async def batched(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    return input


@workflow(name="widened", http=True, concurrency=1)
async def widened(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    return await _work(input.get("hold", 0.05))


@workflow(name="held", http=True, concurrency=1, concurrency_key="tenant")
async def held(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    """Holds its key's slot ``hold`` seconds in its first execution and ``then`` seconds in one that
    continues it after a crash (its step says when the first began); each execution emits ``began``."""
    began = time.time()
    first = await ctx.step("first", lambda: began)
    ctx.emit("began", {"at": began})
    await anyio.sleep(input.get("hold", 0.3) if first == began else input.get("then", 0.3))
    return {"began": began, "ended": time.time()}


# A window and a debounce longer than a restart of workerd: they go on across it.
@workflow(name="paced-slowly", http=True, rate_limit=RateLimit(2, 15.0))
async def paced_slowly(ctx: RunContext, input: dict[str, Any]) -> dict[str, float]:
    return await _work(0.0)


@workflow(name="settled-slowly", http=True, debounce=15.0, debounce_key="topic")
async def settled_slowly(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    return input


WORKFLOWS = [per_tenant, ranked, paced, settled, batched, widened, held, paced_slowly, settled_slowly]

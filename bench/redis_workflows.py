"""Workflows of the Redis run-store benchmark, executed by ``flue worker bench.redis_workflows`` processes."""

from __future__ import annotations

import time

import anyio

from flue_core import RunContext, workflow


@workflow(name="bench-noop")
async def noop(ctx: RunContext, input: dict) -> None:
    return None


@workflow(name="bench-emitter")
async def emitter(ctx: RunContext, input: dict) -> int:
    """Wait for the follower's ``go``, then emit ``count`` events; the first carries the wall time
    just before it is emitted. ``paced``: yield to the event loop after each."""
    await ctx.wait_for_signal("go")
    paced = input.get("paced", False)
    for n in range(input["count"]):
        ctx.emit("tick", {"n": n, "t": time.time()} if n == 0 else {"n": n})
        if paced:
            await anyio.sleep(0)
    return input["count"]

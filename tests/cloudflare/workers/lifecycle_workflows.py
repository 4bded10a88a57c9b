"""The workflows of the runs Worker (``runs_worker.py``), importable on the host too: the error tests
serve the same workflows from a local app and compare the answers.

Reads, listing, cancelling, signalling and the schedules routes are granted to requests carrying
``x-reader: yes`` (closed otherwise).
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from flue_core import RunContext, workflow

READER = {"x-reader": "yes"}


def reader(request: Any, run: Any = None) -> bool:
    return request.headers.get("x-reader") == "yes"


HTTP_OPTIONS = {
    "authorize_run_read": reader,
    "list_runs_enabled": True,
    "authorize_run_list": reader,
    "authorize_run_cancel": reader,
    "authorize_run_signal": reader,
    "schedules_enabled": True,
    "authorize_schedules": lambda request: reader(request),
}


class Greeting(BaseModel):
    name: str
    times: int = 1


class Approval(BaseModel):
    approved: bool
    by: str


@workflow(name="greet", http=True)
async def greet(ctx: RunContext, input: Greeting) -> dict[str, Any]:
    text = await ctx.step("compose", lambda: " ".join([f"hello {input.name}"] * input.times))
    ctx.progress(1, 1, message="composed")
    ctx.emit("greeted", {"name": input.name})
    return {"text": text}


@workflow(name="noop", http=True)
async def noop(ctx: RunContext) -> str:
    return "ok"


@workflow(name="sleeper", http=True)
async def sleeper(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    before = await ctx.step("before", lambda: ctx.attempt)
    await ctx.sleep(input["seconds"])
    return {"before": before, "attempt": ctx.attempt}


@workflow(name="approval", http=True, signals={"approval": Approval})
async def approval(ctx: RunContext) -> dict[str, Any]:
    decision = await ctx.wait_for_signal("approval")
    return {"approved": decision.approved, "by": decision.by}


@workflow(name="square")
async def square(ctx: RunContext, input: dict[str, Any]) -> int:
    return input["n"] * input["n"]


@workflow(name="fan-out", http=True)
async def fan_out(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    children = [await ctx.start_child(square, input={"n": n}) for n in range(input["count"])]
    return {"sum": sum(await ctx.wait_for_all(children)), "children": [child.run_id for child in children]}


@workflow(name="flaky", http=True, retries=2)
async def flaky(ctx: RunContext) -> dict[str, Any]:
    first_seen = await ctx.step("first", lambda: ctx.attempt)  # stored once: later attempts replay it
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return {"first": first_seen, "attempt": ctx.attempt}


@workflow(name="one-at-a-time", http=True, concurrency=1)
async def one_at_a_time(ctx: RunContext, input: dict[str, Any]) -> int:
    ctx.emit("entered", {"n": input["n"]})
    await anyio.sleep(0.15)
    ctx.emit("left", {"n": input["n"]})
    return input["n"]


_STEPPED_HERE: set[str] = set()  # runs whose step "first" ran in this isolate (not replayed)


def _first(ctx: RunContext) -> int:
    _STEPPED_HERE.add(ctx.run_id)
    return ctx.attempt


@workflow(name="slow", http=True, retries=1)
async def slow(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    first = await ctx.step("first", _first, ctx)
    ctx.emit("working", {"attempt": ctx.attempt})
    if ctx.run_id in _STEPPED_HERE:
        await anyio.sleep(input["seconds"])  # not durable: a crash here interrupts the execution
    return {"first": first, "attempt": ctx.attempt}


@workflow(name="slow-once", http=True)
async def slow_once(ctx: RunContext, input: dict[str, Any]) -> str:
    ctx.emit("working", {})
    await anyio.sleep(input["seconds"])
    return "done"


@workflow(name="slow-legacy", http=True, max_recoveries=0)
async def slow_legacy(ctx: RunContext, input: dict[str, Any]) -> str:
    """Interrupted, it fails (``max_recoveries=0``: an interruption counts as a failed attempt)."""
    return await slow_once.fn(ctx, input)


@workflow(name="echo", http=True)
async def echo(ctx: RunContext, input: Any) -> Any:
    return input


@workflow(name="big", http=True)
async def big(ctx: RunContext, input: dict[str, Any]) -> str:
    """A step result or a result of ``size`` characters (Durable Objects store at most 2 MB in a row)."""
    if input["where"] == "step":
        await ctx.step("big", lambda: "x" * input["size"])
        return "stored"
    return "x" * input["size"]


@workflow(name="nightly", schedule="0 3 * * *", schedule_timezone="Europe/Berlin", schedule_input={"at": "03:00"})
async def nightly(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    return input


@workflow(name="cron-tick")
async def cron_tick(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    ctx.emit("ticked", input)
    return input


@workflow(name="job")
async def job(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    ctx.emit("job", input)
    return input


WORKFLOWS = [
    greet,
    noop,
    echo,
    big,
    nightly,
    sleeper,
    approval,
    square,
    fan_out,
    flaky,
    one_at_a_time,
    slow,
    slow_once,
    slow_legacy,
    cron_tick,
    job,
]

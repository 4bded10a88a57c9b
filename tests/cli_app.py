"""The application the CLI tests run: ``flue ... --app cli_app`` (workflows), ``cli_app:runtime`` (a
Runtime) and ``cli_app:app`` (its HTTP app, which opens the runtime and lets anyone read runs)."""

from __future__ import annotations

import os

import anyio
from pydantic import BaseModel

from flue_core import RunContext, Runtime, workflow
from flue_core.http import create_app


class Greeting(BaseModel):
    name: str
    steps: int = 2


class Gate(BaseModel):
    path: str  # the run waits until this file exists: a gate other processes can open


@workflow(name="cli-greet", http=True)
async def greet(ctx: RunContext, input: Greeting) -> dict:
    ctx.log.info("greeting", name=input.name)
    for done in range(1, input.steps + 1):
        ctx.progress(done, input.steps, message=f"step {done}")
    ctx.emit("greeted", {"name": input.name})
    ctx.log.warning("done soon")
    return {"greeting": f"hello {input.name}"}


@workflow(name="cli-fail", http=True)
async def fail(ctx: RunContext) -> None:
    ctx.log.error("giving up")
    raise RuntimeError("it broke")


@workflow(name="cli-gated", http=True)
async def gated(ctx: RunContext, input: Gate) -> str:
    ctx.emit("waiting", {"path": input.path})
    while not os.path.exists(input.path):
        await anyio.sleep(0.02)
    ctx.emit("released", {"path": input.path})
    return "released"


class Count(BaseModel):
    n: int


@workflow(name="cli-chatty", http=True)
async def chatty(ctx: RunContext, input: Count) -> int:
    for i in range(input.n):
        ctx.emit("tick", {"i": i})
    return input.n


class Approval(BaseModel):
    approved: bool


@workflow(name="cli-approval", http=True, signals={"approve": Approval})
async def approval(ctx: RunContext) -> bool:
    decision = await ctx.wait_for_signal("approve")
    return decision.approved


WORKFLOWS = [greet, fail, gated, chatty, approval]
runtime = Runtime(WORKFLOWS)  # on FLUE_STORE, else .flue/flue.db
app = create_app(
    runtime,
    open_runtime=True,
    authorize_run_read=lambda request, run: True,
    list_runs_enabled=True,
    authorize_run_list=lambda request: True,
)
#: The same runtime served with the dashboard (closed to everyone: nothing grants it).
app_with_dashboard = create_app(runtime, open_runtime=True, dashboard=True)

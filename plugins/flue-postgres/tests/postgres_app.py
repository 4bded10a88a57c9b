"""Workflows of the multi-process Postgres tests, run by ``flue worker postgres_app`` processes, and an admitter.

Every execution of a workflow body (and of a step's function) appends a line ``<what> <run_id>`` to
``$FLUE_TEST_CALLS/<pid>.calls``, so a test can count executions across processes.

As a script: ``python postgres_app.py STORE_URL COUNT KEY_MODULO OUT`` admits COUNT runs of ``pg-noop``
from an admit-only runtime (16 concurrent callers), run ``i`` with the key ``k<i % KEY_MODULO>``
(none when KEY_MODULO is 0), and writes one ``[i, key, run_id]`` JSON line per admission to OUT.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

from flue_core import RunContext, Runtime, workflow, workflows


def record(what: str, run_id: str) -> str:
    folder = os.environ.get("FLUE_TEST_CALLS")
    if folder:
        with open(Path(folder) / f"{os.getpid()}.calls", "a", encoding="utf-8") as calls:
            calls.write(f"{what} {run_id}\n")
    return what


@workflow(name="pg-noop")
async def noop(ctx: RunContext, input: dict) -> int:
    record("noop", ctx.run_id)
    return input["n"]


@workflow(name="pg-parent")
async def parent(ctx: RunContext, input: dict) -> int:
    await ctx.step("mark", record, "parent", ctx.run_id)  # a step: the body runs again after the wait
    child = await ctx.start_child(noop, input={"n": input["n"]}, key="child")
    return await ctx.wait_for(child)


_FIRST_HERE: set[str] = set()  # runs whose step "first" ran in this process (not replayed)


def _first(run_id: str) -> str:
    _FIRST_HERE.add(run_id)
    return record("first", run_id)


@workflow(name="pg-steps")
async def steps(ctx: RunContext, input: dict) -> dict:
    first = await ctx.step("first", _first, ctx.run_id)
    if ctx.run_id in _FIRST_HERE:
        await anyio.sleep_forever()  # the test kills the process that ran the step
    return {"first": first, "attempt": ctx.attempt}


@workflow(name="pg-outage")
async def outage(ctx: RunContext, input: dict) -> dict:
    """A step that outlasts its start by ``seconds`` (the test stops Postgres meanwhile), then another."""
    await ctx.step("long", _long, ctx.run_id, input["seconds"])
    await ctx.step("after", record, "after", ctx.run_id)
    return {"attempt": ctx.attempt}


async def _long(run_id: str, seconds: float) -> str:
    record("long", run_id)
    await anyio.sleep(seconds)
    return "long"


@workflow(name="pg-ticker")
async def ticker(ctx: RunContext, input: dict) -> int:
    record("ticker", ctx.run_id)
    for n in range(input["ticks"]):
        ctx.emit("tick", {"n": n})
        await anyio.sleep(input.get("pause", 0.02))
    return input["ticks"]


@workflow(name="pg-sleepy")
async def sleepy(ctx: RunContext, input: dict) -> str:
    record("sleepy", ctx.run_id)
    await anyio.sleep(input["seconds"])
    return "slept"


@workflow(name="pg-stepper")
async def stepper(ctx: RunContext, input: dict) -> int:
    """``count`` steps, each recorded when it runs (not when it is replayed) and taking ``pause`` seconds."""
    for n in range(input["count"]):
        await ctx.step(f"s{n}", _slow_step, f"step{n}", ctx.run_id, input.get("pause", 0.02))
    return input["count"]


async def _slow_step(what: str, run_id: str, pause: float) -> str:
    record(what, run_id)
    await anyio.sleep(pause)
    return what


WORKFLOWS = [noop, parent, steps, ticker, sleepy, outage, stepper]


async def admit_many(url: str, count: int, modulo: int, out: str) -> None:
    lines: list[str] = []
    next_index = iter(range(count))

    async def caller() -> None:
        for i in next_index:
            key = f"k{i % modulo}" if modulo else None
            receipt = await workflows.start(noop, input={"n": i % modulo if modulo else i}, key=key)
            lines.append(json.dumps([i, key, receipt.run_id]))

    async with Runtime(WORKFLOWS, store=url, execute=False):
        async with anyio.create_task_group() as tasks:
            for _ in range(16):
                tasks.start_soon(caller)
    Path(out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    anyio.run(admit_many, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

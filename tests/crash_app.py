"""A process that starts a run and reports when the run is mid-step, so a test can kill it with -9.

Usage: python crash_app.py DB_PATH WORKFLOW READY_FILE — start a run of WORKFLOW and wait for it;
       python crash_app.py DB_PATH --wait RUN_ID — recover (adopt) what is left and wait for RUN_ID.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_node_like import LocalTarget, SqliteStore

CALLS_FILE_SUFFIX = ".calls"


def record_call(db: str, name: str) -> int:
    calls = Path(db + CALLS_FILE_SUFFIX)
    lines = calls.read_text().splitlines() if calls.exists() else []
    lines.append(name)
    calls.write_text("\n".join(lines) + "\n")
    return len(lines)


async def _block(ctx: RunContext, ready: str | None) -> None:
    """Report the run under way and block, in the first execution only (the ready file's absence)."""
    if ready and not Path(ready).exists():
        Path(ready).write_text(ctx.run_id)
        await anyio.sleep_forever()  # the test kills the process here


@workflow(name="crash-retry", retries=1)
async def crash_retry(ctx: RunContext, input: dict) -> dict:
    fetched = await ctx.step("fetch", record_call, input["db"], "fetch")
    await _block(ctx, input.get("ready"))
    return {"fetched": fetched, "attempt": ctx.attempt}


@workflow(name="crash-once")
async def crash_once(ctx: RunContext, input: dict) -> dict:
    fetched = await ctx.step("fetch", record_call, input["db"], "fetch")
    await _block(ctx, input.get("ready"))
    return {"fetched": fetched, "attempt": ctx.attempt}


@workflow(name="crash-legacy", max_recoveries=0)
async def crash_legacy(ctx: RunContext, input: dict) -> dict:
    await _block(ctx, input.get("ready"))
    return {"attempt": ctx.attempt}


def _die(db: str) -> None:
    record_call(db, "die")
    os.kill(os.getpid(), signal.SIGKILL)


@workflow(name="crash-always", max_recoveries=2)
async def crash_always(ctx: RunContext, input: dict) -> None:
    """A step that kills its own process every time: a crash loop ``max_recoveries`` must end."""
    if input.get("ready"):
        Path(input["ready"]).write_text(ctx.run_id)
    await ctx.step("die", _die, input["db"])


WORKFLOWS = [crash_retry, crash_once, crash_legacy, crash_always]


def target(db: str) -> LocalTarget:
    return LocalTarget(SqliteStore(db), sweep_interval=0.1)


async def main(db: str, name: str, ready: str) -> None:
    async with Runtime(WORKFLOWS, target=target(db)):
        if name == "--wait":
            await runs.wait(ready)
            return
        receipt = await workflows.start(name, input={"db": db, "ready": ready})
        await runs.wait(receipt.run_id)


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])

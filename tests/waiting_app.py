"""A process that leaves runs sleeping, waiting for a signal and scheduled, then waits to be killed.

Usage: python waiting_app.py DB_PATH READY_FILE — READY_FILE gets the run ids once all three wait.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_node_like import LocalTarget, SqliteStore

from crash_app import CALLS_FILE_SUFFIX, record_call  # noqa: F401  (the test reads the calls file)


@workflow(name="waiting-sleeper")
async def sleeper(ctx: RunContext, input: dict) -> str:
    await ctx.step("before", record_call, input["db"], "before-sleep")
    await ctx.sleep(input["seconds"])
    return "slept"


@workflow(name="waiting-approval")
async def approval(ctx: RunContext, input: dict) -> object:
    await ctx.step("before", record_call, input["db"], "before-signal")
    return await ctx.wait_for_signal("approve")


@workflow(name="waiting-later")
async def later(ctx: RunContext) -> str:
    return "started later"


WORKFLOWS = [sleeper, approval, later]


def target(db: str) -> LocalTarget:
    return LocalTarget(SqliteStore(db), sweep_interval=0.1)


async def main(db: str, ready: str) -> None:
    async with Runtime(WORKFLOWS, target=target(db)):
        ids = {
            "sleeper": (await workflows.start(sleeper, input={"db": db, "seconds": 2})).run_id,
            "approval": (await workflows.start(approval, input={"db": db})).run_id,
            "later": (await workflows.start(later, delay=2)).run_id,
        }
        with anyio.fail_after(20):
            while True:
                statuses = {(await runs.get(run_id)).status for run_id in ids.values()}  # type: ignore[union-attr]
                if statuses <= {"waiting", "scheduled"}:
                    break
                await anyio.sleep(0.02)
        Path(ready).write_text(json.dumps(ids))
        await anyio.sleep_forever()  # the test kills the process here


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:3])

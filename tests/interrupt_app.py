"""A program with an open runtime, for tests that interrupt it with SIGINT (Ctrl-C).

Usage: python interrupt_app.py DB READY_FILE HOST RUN_SECONDS SHUTDOWN_GRACE

``HOST`` is ``async`` (``anyio.run``) or ``thread`` (sync code with ``Runtime.run_in_thread``). The
program starts one run of ``sleeper`` (which sleeps ``RUN_SECONDS``), writes the run id to READY_FILE
once the run is executing, then waits to be interrupted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio

from flue_core import RunContext, Runtime, workflow, workflows
from flue_node_like import LocalTarget, SqliteStore


@workflow
async def sleeper(ctx: RunContext, input: dict) -> str:
    Path(input["ready"]).write_text(ctx.run_id)
    await anyio.sleep(input["seconds"])
    return "slept"


def runtime(db: str, grace: float) -> Runtime:
    return Runtime([sleeper], target=LocalTarget(SqliteStore(db), shutdown_grace=grace))


async def main_async(db: str, ready: str, seconds: float, grace: float) -> None:
    async with runtime(db, grace):
        await workflows.start(sleeper, input={"ready": ready, "seconds": seconds})
        await anyio.sleep_forever()


def main_thread(db: str, ready: str, seconds: float, grace: float) -> None:
    with runtime(db, grace).run_in_thread():
        workflows.start_sync(sleeper, input={"ready": ready, "seconds": seconds})
        while True:
            time.sleep(1)


if __name__ == "__main__":
    db, ready, host, seconds, grace = sys.argv[1:6]
    try:
        if host == "async":
            anyio.run(main_async, db, ready, float(seconds), float(grace))
        else:
            main_thread(db, ready, float(seconds), float(grace))
    except KeyboardInterrupt:
        print("interrupted", flush=True)

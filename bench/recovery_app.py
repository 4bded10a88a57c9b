"""The first worker of ``bench.recovery``: executes runs that store a step and then block.

Usage: python recovery_app.py STORE_URL COUNT READY_FILE LEASE SWEEP — writes the run ids to READY_FILE
once every run has stored its step, then waits for the benchmark to kill or stop it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flue_core import RunContext, Runtime, workflow, workflows  # noqa: E402
from flue_node_like import LocalTarget  # noqa: E402

FIRST = os.getpid()  # the process started as the first worker blocks; any other resumes


def _pid() -> int:
    return os.getpid()


@workflow(name="recovery-blocked")
async def blocked(ctx: RunContext) -> int:
    pid = await ctx.step("work", _pid)
    if pid == os.getpid() and os.environ.get("FLUE_BENCH_FIRST") == "1":
        await anyio.sleep_forever()
    return pid


WORKFLOWS = [blocked]


def target(store: str, lease: float, sweep: float) -> LocalTarget:
    return LocalTarget(store, lease=lease, sweep_interval=sweep, concurrency=1000)


async def main(store: str, count: str, ready: str, lease: str, sweep: str) -> None:
    async with Runtime(WORKFLOWS, target=target(store, float(lease), float(sweep))) as rt:
        ids = [(await workflows.start(blocked)).run_id for _ in range(int(count))]
        with anyio.fail_after(60):
            while True:
                done = [len(await rt.target.store.load_steps(run_id)) for run_id in ids]
                if all(done):
                    break
                await anyio.sleep(0.01)
        Path(ready).write_text(" ".join(ids))
        await anyio.sleep_forever()


if __name__ == "__main__":
    os.environ["FLUE_BENCH_FIRST"] = "1"
    anyio.run(main, *sys.argv[1:6])

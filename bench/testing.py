"""Figures of the testing toolkit (docs/testing.md): the day-long approval tested in virtual time, and the
replay check of many stored runs on SQLite.

    .venv/bin/python -m bench.testing approval            # both paths, real seconds each (median of 20)
    .venv/bin/python -m bench.testing replay --runs 10000 # builds the store once under bench/results/

The replay figure is the wall time of ``flue replay --app ... --store sqlite:///...`` (a fresh process:
imports, the read-only open, every run replayed, the report) and of ``replay.check`` in-process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.errors import SignalTimeout

RESULTS = Path(__file__).parent / "results"


class Decision(BaseModel):
    approved: bool
    by: str


async def notify(amount: int) -> dict:
    return {"sent": True}


async def pay(amount: int) -> dict:
    return {"paid": amount}


@workflow(name="expense-approval", signals={"decision": Decision})
async def expense_approval(ctx: RunContext, input: dict) -> dict:
    await ctx.step("notify", notify, input["amount"])
    try:
        decision = await ctx.wait_for_signal("decision", timeout=24 * 3600)
    except SignalTimeout:
        return {"status": "expired"}
    if decision.approved:
        await ctx.step("pay", pay, input["amount"])
        await ctx.sleep(3600)
        await ctx.step("receipt", notify, input["amount"])
    return {"status": "approved" if decision.approved else "rejected"}


async def approval_paths() -> tuple[float, float]:
    """Real seconds of the timeout path and of the approve path, each a whole test: the environment
    opened, the run started, the day passed or the signal sent, the result read, the environment closed."""
    from flue_core.testkit import TestEnvironment

    began = time.perf_counter()
    async with TestEnvironment([expense_approval]) as env:
        run = await env.start(expense_approval, {"amount": 120})
        await env.advance(hours=24)
        assert await env.result(run) == {"status": "expired"}
    timeout_path = time.perf_counter() - began
    began = time.perf_counter()
    async with TestEnvironment([expense_approval]) as env:
        run = await env.start(expense_approval, {"amount": 120})
        await env.waiting(run, signal="decision")
        await env.signal(run, "decision", {"approved": True, "by": "grace"})
        assert await env.result(run) == {"status": "approved"}
    return timeout_path, time.perf_counter() - began


async def build_store(path: Path, count: int) -> None:
    """``count`` runs of the approval on SQLite: half wait for the decision, half were approved and sleep."""
    from flue_node_like.sqlite import SqliteStore

    store = SqliteStore(path, synchronous="NORMAL")  # faster to build; the check reads it the same
    async with Runtime([expense_approval], store=store, concurrency=64):
        ids: list[str] = []

        async def admit(share: int) -> None:
            for _ in range(share):
                ids.append((await workflows.start(expense_approval, input={"amount": len(ids)})).run_id)

        async with anyio.create_task_group() as tasks:
            for caller in range(32):
                tasks.start_soon(admit, count // 32 + (caller < count % 32))
        for run_id in ids:
            await _until_waiting(run_id)
        for run_id in ids[::2]:
            await runs.signal(run_id, "decision", {"approved": True, "by": "grace"})
        for run_id in ids[::2]:
            await _until_waiting(run_id, kind="sleep")


async def _until_waiting(run_id: str, kind: str | None = None) -> None:
    while True:
        record = await runs.get(run_id)
        if record is not None and record.waiting_for is not None and (kind is None or record.waiting_for.kind == kind):
            return
        await anyio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.testing")
    parser.add_argument("what", choices=["approval", "replay"])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    if args.what == "approval":
        timings = [anyio.run(approval_paths) for _ in range(20)]
        for index, name in enumerate(("timeout path", "approve path")):
            values = [t[index] for t in timings]
            print(f"{name}: median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (real time, 20 runs)")
        return
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"replay-{args.runs}.db"
    if not path.exists():
        began = time.perf_counter()
        anyio.run(build_store, path.with_suffix(".part"), args.runs)
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{path.with_suffix('.part')}{suffix}")
            if part.exists():
                part.rename(f"{path}{suffix}")
        print(f"built {args.runs} runs in {time.perf_counter() - began:.1f} s: {path}")
    url = f"sqlite:///{path}"
    began = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flue"), "replay", "--app", "bench.testing", "--store", url, "--format", "text"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    elapsed = time.perf_counter() - began
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr)
    print(f"flue replay (a fresh process, exit {done.returncode}): {elapsed:.2f} s")

    async def in_process() -> float:
        from flue_core import replay

        began = time.perf_counter()
        report = await replay.check([expense_approval], store=url)
        assert report.ok and len(report.runs) == args.runs, report.summary()
        return time.perf_counter() - began

    print(f"replay.check in-process: {anyio.run(in_process):.2f} s")


if __name__ == "__main__":
    main()

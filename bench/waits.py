"""The benchmark of durable waits (issue 7) on the local target, SQLite (synchronous=FULL) by default.

``python -m bench.waits`` (or ``bench/run waits``) measures, in one process:

* timer lateness: 1,000 runs sleep concurrently until moments spread over one second; lateness is
  how long after its ``wake_at`` each run continued (p50/p99/max);
* signal round trip: ``runs.signal()`` called → the waiting run continues after ``wait_for_signal``
  (p50/p99 over sequential trials);
* 10,000 suspended runs: what they cost (resident memory, asyncio tasks) and sequential admission of
  no-op runs before and after they are parked.

Prints a Markdown table and writes ``bench/results/waits-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from bench.stats import latency
from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.models import utc_now
from flue_node_like import LocalTarget, MemoryStore, SqliteStore

RESULTS = Path(__file__).parent / "results"
RESUMED: dict[str, float] = {}


@workflow(name="bench-sleep-until")
async def sleep_until(ctx: RunContext, input: dict) -> float:
    until = utc_now().fromisoformat(input["until"])
    await ctx.sleep_until(until)
    return time.time() - until.timestamp()


@workflow(name="bench-wait-signal")
async def wait_signal(ctx: RunContext) -> None:
    await ctx.wait_for_signal("go")
    RESUMED[ctx.run_id] = time.perf_counter()


@workflow(name="bench-noop")
async def noop(ctx: RunContext) -> None:
    return None


WORKFLOWS = [sleep_until, wait_signal, noop]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _timers(count: int) -> dict[str, Any]:
    base = utc_now() + timedelta(seconds=2)
    moments = [base + timedelta(seconds=random.random()) for _ in range(count)]
    receipts = [await workflows.start(sleep_until, input={"until": moment.isoformat()}) for moment in moments]
    lateness = [await runs.result(r.run_id, timeout=60) for r in receipts]
    return {"count": count, **latency(lateness), "max_ms": max(lateness) * 1000}


async def _signals(trials: int) -> dict[str, Any]:
    samples = []
    for _ in range(trials):
        receipt = await workflows.start(wait_signal)
        with anyio.fail_after(10):
            while (await runs.get(receipt.run_id)).status != "waiting":  # type: ignore[union-attr]
                await anyio.sleep(0.001)
        began = time.perf_counter()
        await runs.signal(receipt.run_id, "go")
        with anyio.fail_after(10):
            while receipt.run_id not in RESUMED:
                await anyio.sleep(0.0002)
        samples.append(RESUMED[receipt.run_id] - began)
        await runs.wait(receipt.run_id, timeout=10)
    return {"trials": trials, **latency(samples)}


async def _admissions(count: int) -> dict[str, Any]:
    samples = []
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        await workflows.start(noop)
        samples.append(time.perf_counter() - start)
    return {"count": count, **latency(samples), "rate_per_s": count / (time.perf_counter() - began)}


async def _parked(count: int, admissions: int) -> dict[str, Any]:
    before = await _admissions(admissions)
    rss, tasks = _rss_mb(), len(asyncio.all_tasks())
    receipts = [await workflows.start(wait_signal) for _ in range(count)]
    with anyio.fail_after(300):
        while True:
            page = await runs.list(workflow="bench-wait-signal", status="waiting", limit=1000)
            waiting = len(page.runs)
            if waiting >= min(count, 1000) and (await runs.get(receipts[-1].run_id)).status == "waiting":  # type: ignore[union-attr]
                break
            await anyio.sleep(0.2)
    after = await _admissions(admissions)
    return {
        "count": count,
        "rss_mb_added": _rss_mb() - rss,
        "tasks_added": len(asyncio.all_tasks()) - tasks,
        "admission_before": before,
        "admission_after": after,
    }


async def measure(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    stores = {"sqlite": lambda: SqliteStore(store_url), "memory": lambda: MemoryStore()}
    target = LocalTarget(stores[args.store](), concurrency=args.concurrency)
    async with Runtime(WORKFLOWS, target=target):
        return {
            "timers": await _timers(args.timers),
            "signals": await _signals(args.signals),
            "parked": await _parked(args.parked, args.admissions),
        }


def _table(result: dict[str, Any]) -> str:
    timers, signals, parked = result["timers"], result["signals"], result["parked"]
    before, after = parked["admission_before"], parked["admission_after"]
    rows = [
        ("timer lateness, 1,000 concurrent sleeps: p50 / p99 / max", f"{timers['p50_ms']:.1f} / {timers['p99_ms']:.1f} / {timers['max_ms']:.1f} ms"),
        ("signal round trip: p50 / p99", f"{signals['p50_ms']:.2f} / {signals['p99_ms']:.2f} ms"),
        (f"{parked['count']:,} suspended runs: memory / tasks added", f"{parked['rss_mb_added']:.1f} MB / {parked['tasks_added']}"),
        ("sequential admission before them: p50 / rate", f"{before['p50_ms']:.2f} ms / {before['rate_per_s']:,.0f}/s"),
        ("sequential admission with them: p50 / rate", f"{after['p50_ms']:.2f} ms / {after['rate_per_s']:,.0f}/s"),
    ]
    return "\n".join(["| measure | figure |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--timers", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--parked", type=int, default=10_000)
    parser.add_argument("--admissions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result = anyio.run(measure, str(Path(directory) / "waits.db"), args)
    result["machine"] = {"python": platform.python_version(), "store": args.store}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"waits-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(_table(result))


if __name__ == "__main__":
    main()



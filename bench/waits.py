"""The benchmark of durable waits (issue 7) on the local target, SQLite (synchronous=FULL) by default.

``python -m bench.waits`` (or ``bench/run waits``) measures, in one process:

* timer lateness: 1,000 runs sleep concurrently until moments spread over one second, all started
  before the first; lateness is how long after its ``wake_at`` each run continued (p50/p99/max);
* signal round trip: ``runs.signal()`` called → the waiting run continues after ``wait_for_signal``
  (p50/p99 over sequential trials);
* 10,000 suspended runs: what they cost (resident memory, asyncio tasks) and sequential admission of
  no-op runs before and after they are parked;
* then the first three for DBOS 3.4 on its SQLite system database, in a child process
  (:mod:`bench.dbos_waits`; ``--no-dbos`` leaves it out).

Prints a Markdown table and writes ``bench/results/waits-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from bench.child import measure_in_child
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


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _timers(count: int) -> dict[str, Any]:
    began = time.time()
    base = utc_now() + timedelta(seconds=timer_margin(count))
    moments = [base + timedelta(seconds=random.random()) for _ in range(count)]
    receipts = [await workflows.start(sleep_until, input={"until": moment.isoformat()}) for moment in moments]
    started_s = time.time() - began
    lateness = [await runs.result(r.run_id, timeout=60) for r in receipts]
    return {"count": count, **latency(lateness), "max_ms": max(lateness) * 1000, "started_s": started_s}


def timer_margin(count: int) -> float:
    """Seconds from now to the first wake: room to start every sleeper first, so lateness is the
    timers' own and not the admissions'."""
    return 2 + count / 50


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
    rss, tasks = rss_mb(), len(asyncio.all_tasks())
    last_run_id = ""
    for _ in range(count):  # only the last id is kept: the figure is what the runtime holds, not the bench
        last_run_id = (await workflows.start(wait_signal)).run_id
    with anyio.fail_after(300):
        while True:
            last = await runs.get(last_run_id)
            if last is not None and last.status == "waiting":  # runs start in admission order
                break
            await anyio.sleep(0.2)
    gc.collect()
    after = await _admissions(admissions)
    return {
        "count": count,
        "rss_mb_added": rss_mb() - rss,
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


def _dbos(directory: str, args: argparse.Namespace) -> dict[str, Any]:
    return measure_in_child("bench.dbos_waits", directory, args.timers, args.dbos_signals, args.parked)


def _table(result: dict[str, Any]) -> str:
    flue, dbos = result["flue"], result.get("dbos")
    timers = flue["timers"]
    before, after = flue["parked"]["admission_before"], flue["parked"]["admission_after"]

    def cells(source: dict[str, Any]) -> list[str]:
        t, s, p = source["timers"], source["signals"], source["parked"]
        return [
            f"{t['p50_ms']:.1f} / {t['p99_ms']:.1f} / {t['max_ms']:.1f} ms",
            f"{t['started_s']:.1f} s",
            f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms",
            f"{p['rss_mb_added']:.1f} MB / {p['tasks_added']:,}",
        ]

    labels = [
        f"timer lateness, {timers['count']:,} concurrent sleeps: p50 / p99 / max",
        f"time to start the sleepers (first wake after {timer_margin(timers['count']):.0f} s)",
        "signal round trip: p50 / p99",
        f"{flue['parked']['count']:,} suspended runs: memory / tasks added",
    ]
    columns = [cells(flue)] + ([cells(dbos)] if dbos else [])
    rows = [[label, *(column[i] for column in columns)] for i, label in enumerate(labels)]
    for when, admission in (("before", before), ("with", after)):
        figure = f"{admission['p50_ms']:.2f} ms / {admission['rate_per_s']:,.0f}/s"
        rows.append([f"sequential admission {when} them: p50 / rate", figure])
    flue_head = "Flue, SQLite" if result["machine"]["store"] == "sqlite" else "Flue, memory"
    head = ["measure", flue_head] + (["DBOS 3.4, SQLite"] if dbos else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(row + [""] * (len(head) - len(row))) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--timers", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--parked", type=int, default=10_000)
    parser.add_argument("--admissions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dbos-signals", type=int, default=20, help="DBOS's trials (each waits for its poll)")
    parser.add_argument("--no-dbos", dest="dbos", action="store_false", help="measure Flue only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result: dict[str, Any] = {"flue": anyio.run(measure, str(Path(directory) / "waits.db"), args)}
        if args.dbos:
            result["dbos"] = _dbos(directory, args)
    result["machine"] = {"python": platform.python_version(), "store": args.store}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"waits-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(_table(result))


if __name__ == "__main__":
    main()



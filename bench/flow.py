"""Flow control's cost and accuracy (issue 18's figures), on memory, SQLite and Redis:

* admission of a workflow without limits beside one with ``concurrency_key`` over 10,000 distinct
  keys (admit-only processes, so both write the same rows; then end to end with a worker executing);
* a rate limit of 100/s held over 10 s (starts counted from the runs' ``started_at``);

Rounds are interleaved (A, B, A, B...) and medians reported, since these machines are shared.
``python -m bench.flow --help``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from flue_core import RateLimit, RunContext, Runtime, runs, workflow, workflows
from flue_core.models import RunStatus
from flue_core.store import RunQuery


class Job(BaseModel):
    customer: str


@workflow(name="bench-plain")
async def plain(ctx: RunContext, input: Job) -> None:
    return None


@workflow(name="bench-keyed", concurrency=1, concurrency_key="customer")
async def keyed(ctx: RunContext, input: Job) -> None:
    return None


@workflow(name="bench-rated", rate_limit=RateLimit(100, 1.0))
async def rated(ctx: RunContext, input: Job) -> None:
    return None


WORKFLOWS = [plain, keyed, rated]
#: Runs admitted before each timed round.
WARMUP = 200


async def admissions(url: str, wf: Any, count: int, execute: bool) -> float:
    """Runs admitted per second by one caller (and, with ``execute``, until all ended)."""
    async with Runtime(WORKFLOWS, store=url, execute=execute) as rt:
        for n in range(WARMUP):  # imports, caches and the first connections are not what is measured
            await runs.wait((await workflows.start(wf, input={"customer": f"w{n}"}, runtime=rt)).run_id, runtime=rt) if execute else (
                await workflows.start(wf, input={"customer": f"w{n}"}, runtime=rt)
            )
        started = time.perf_counter()
        ids = [(await workflows.start(wf, input={"customer": f"c{n}"}, runtime=rt)).run_id for n in range(count)]
        if execute:
            for run_id in ids:
                await runs.wait(run_id, timeout=120, runtime=rt)
        return count / (time.perf_counter() - started)


async def rate_window(url: str, total: int) -> dict[str, Any]:
    """Admit ``total`` runs of a 100/s workflow at once; how many start in the first 10 s, and the
    most in any one second."""
    async with Runtime(WORKFLOWS, store=url, execute=False) as rt:
        ids = [(await workflows.start(rated, input={"customer": "-"}, runtime=rt)).run_id for _ in range(total)]
    async with Runtime(WORKFLOWS, store=url, concurrency=32) as rt:
        await anyio.sleep(10.5)
        starts = sorted(
            record.started_at.timestamp()
            for record in await rt.target.store.list(RunQuery(workflow="bench-rated", limit=total))
            if record.started_at is not None
        )
    first = starts[0]
    in_ten = sum(1 for start in starts if start < first + 10)
    most = max(sum(1 for other in starts[i:] if other < start + 1) for i, start in enumerate(starts))
    del ids
    return {"started_in_10s": in_ten, "rate": in_ten / 10, "max_in_any_second": most, "error_pct": (in_ten / 1000 - 1) * 100}


def stores(kind: str, directory: Path, n: int, redis_url: str | None) -> str:
    if kind == "memory":
        return f"memory://bench-{n}-{time.monotonic_ns()}"
    if kind == "sqlite":
        return f"sqlite:///{directory}/bench-{n}.db"
    assert redis_url is not None
    return redis_url + f"?prefix=bench{n}x{time.monotonic_ns()}"


async def measure(args: argparse.Namespace, directory: Path, redis_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    n = 0
    for kind in args.stores:
        figures: dict[str, list[float]] = {"plain": [], "keyed": [], "plain_e2e": [], "keyed_e2e": []}
        for _ in range(args.rounds):
            for name, wf in (("plain", plain), ("keyed", keyed)):
                n += 1
                figures[name].append(await admissions(stores(kind, directory, n, redis_url), wf, args.runs, execute=False))
            for name, wf in (("plain_e2e", plain), ("keyed_e2e", keyed)):
                n += 1
                figures[name].append(await admissions(stores(kind, directory, n, redis_url), wf, args.e2e_runs, execute=True))
        medians = {name: statistics.median(values) for name, values in figures.items()}
        n += 1
        results[kind] = {
            **medians,
            "keyed_vs_plain": medians["keyed"] / medians["plain"],
            "keyed_vs_plain_e2e": medians["keyed_e2e"] / medians["plain_e2e"],
            "rate": await rate_window(stores(kind, directory, n, redis_url), args.rate_runs) if args.rate_runs else None,
        }
        print(kind, results[kind], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", nargs="+", default=["memory", "sqlite", "redis"], choices=["memory", "sqlite", "redis"])
    parser.add_argument("--runs", type=int, default=10_000, help="runs per admission round (each of its own key)")
    parser.add_argument("--e2e-runs", type=int, default=2000, help="runs per end-to-end round (each of its own key)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-runs", type=int, default=1500, help="runs admitted for the 100/s window (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flue-bench-flow-") as folder:
        directory = Path(folder)
        server = None
        redis_url = None
        if "redis" in args.stores:
            from flue_node_like.redis_server import RedisServer

            server = RedisServer(directory / "redis").start()
            redis_url = server.url()
        try:
            results = anyio.run(measure, args, directory, redis_url)
        finally:
            if server is not None:
                server.stop()
    print()
    print("| store | admission, no limits | with concurrency_key (10,000 keys) | ratio | end to end, no limits | keyed | ratio | 100/s over 10 s | most in 1 s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        rate = r["rate"] or {}
        print(
            f"| {kind} | {r['plain']:,.0f}/s | {r['keyed']:,.0f}/s | {r['keyed_vs_plain']:.2f} | {r['plain_e2e']:,.0f}/s"
            f" | {r['keyed_e2e']:,.0f}/s | {r['keyed_vs_plain_e2e']:.2f} | {rate.get('started_in_10s', '-')} starts"
            f" ({rate.get('error_pct', 0):+.1f} %) | {rate.get('max_in_any_second', '-')} |"
        )


if __name__ == "__main__":
    main()

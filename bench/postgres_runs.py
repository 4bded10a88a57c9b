"""The Postgres run store (flue-postgres) beside DBOS 3.4 on Postgres, in one run on one server.

``bench/run postgres`` (``python -m bench.postgres_runs``) starts its own Postgres
(:class:`flue_postgres.server.PostgresServer`: ``initdb`` in a temporary folder, ``fsync`` and
``synchronous_commit`` on) and measures Flue on it the way :mod:`bench.redis_runs` measures the Redis
store (same workflows, same functions):

* **sequential admission**: an admit-only runtime (``Runtime(..., execute=False)``, a web process)
  awaits ``workflows.start(noop, input={"n": i})`` in a loop: p50, p99, rate; no worker runs meanwhile;
* **32 concurrent callers**: 32 tasks of that process starting runs in loops: rate, p50, p99;
* **end-to-end**: with 2 ``flue worker`` processes, ``start()`` then ``runs.result()`` from the
  admit-only process, one run at a time: p50, p99;
* **bulk**: 10,000 runs started by 32 callers and executed by the 2 workers, until the last has ended;
* **1,000 events to a follower in another process**: a run on a worker emits 1,000 events once the
  follower (this process) has signalled it to go; from the first emit to the follower holding the
  1,000th, burst and paced, median of 5;
* **stored runs**: finished runs are added until 1k, 10k, 50k and 100k are stored; at each point the
  workers are paused (``SIGSTOP``) and 2,000 sequential admissions measured, with the schema's size
  on disk per run.

Then DBOS 3.4 in a child process (:mod:`bench.dbos_postgres`) on a database of its own on the same
server: sequential and 32-thread ``start_workflow``, ``start_workflow().get_result()`` (executed in the
starting process: DBOS's fastest path) and 1,000 ``write_stream`` values read with ``read_stream``.
Figures go to ``bench/results/postgres-runs-<time>.json`` (not committed); a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from bench.child import measure_in_child
from bench.redis_runs import bulk, concurrent, end_to_end, events, paused, sequential, web, workers
from flue_core import runs
from flue_postgres.server import PostgresServer

RESULTS = Path(__file__).parent / "results"
CURVE = (1_000, 10_000, 50_000, 100_000)


async def schema_bytes(url: str, schema: str) -> int:
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        return await conn.fetchval(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            schema,
        )
    finally:
        await conn.close()


async def curve(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    stored = 0
    with workers(url) as processes:
        async with web(url) as rt:
            for target in CURVE:
                if target > args.curve_max:
                    break
                while stored < target:  # stored runs are finished runs, as they mostly are
                    batch = min(10_000, target - stored)
                    _, run_ids = await concurrent(rt, 32, batch)
                    for run_id in run_ids:
                        await runs.wait(run_id, runtime=rt)
                    stored += len(run_ids)
                size = await schema_bytes(url, "curve")
                with paused(processes):
                    point = await sequential(rt, args.curve_sequential, 0)
                stored += args.curve_sequential  # (executed once the workers resume)
                points.append({"stored": target, "bytes_per_run": size / target, **point})
                print(f"  {target:>7,} stored: p50 {point['p50_ms']:.3f} ms, p99 {point['p99_ms']:.3f} ms,"
                      f" {point['rate']:,.0f}/s, {size / target:,.0f} B on disk per run", file=sys.stderr)  # fmt: skip
    return points


async def measure(server: PostgresServer, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    url = server.url("flue_bench", schema="admission")
    async with web(url) as rt:
        out["sequential"] = await sequential(rt, args.sequential, 500)
        print(f"sequential: {out['sequential']}", file=sys.stderr)
        out["concurrent"], _ = await concurrent(rt, 32, args.concurrent)
        print(f"concurrent: {out['concurrent']}", file=sys.stderr)
    url = server.url("flue_bench", schema="executed")
    with workers(url):
        async with web(url) as rt:
            out["end_to_end"] = await end_to_end(rt, args.end_to_end)
            print(f"end-to-end: {out['end_to_end']}", file=sys.stderr)
            out["bulk"] = await bulk(rt, args.bulk)
            print(f"bulk: {out['bulk']}", file=sys.stderr)
            out["events"] = await events(rt, args.event_trials)
            print(f"events: {out['events']}", file=sys.stderr)
    if args.curve_max:
        out["curve"] = await curve(server.url("flue_bench", schema="curve"), args)
    return out


def table(flue: dict[str, Any], dbos: dict[str, Any]) -> str:
    def cell(source: dict[str, Any], pick: Any, unit: str) -> str:
        try:
            return unit.format(pick(source))
        except (KeyError, TypeError):
            return "—"

    rows = [
        ("sequential admission p50", lambda r: r["sequential"]["p50_ms"], "{:.3f} ms"),
        ("sequential admission p99", lambda r: r["sequential"]["p99_ms"], "{:.3f} ms"),
        ("sequential admission rate", lambda r: r["sequential"]["rate"], "{:,.0f}/s"),
        ("32 concurrent callers: rate", lambda r: r["concurrent"]["rate"], "{:,.0f}/s"),
        ("32 concurrent callers: p50 / p99", lambda r: (r["concurrent"]["p50_ms"], r["concurrent"]["p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
        ("end-to-end p50", lambda r: r["end_to_end"]["p50_ms"], "{:.2f} ms"),
        ("end-to-end p99", lambda r: r["end_to_end"]["p99_ms"], "{:.2f} ms"),
        ("1,000 events to a follower, burst (median)", lambda r: r["events"]["burst"]["median_s"], "{:.3f} s"),
        ("1,000 events to a follower, paced (median)", lambda r: r["events"]["paced"]["median_s"], "{:.3f} s"),
        ("1,000 stream values to a reader (median)", lambda r: r["events"]["median_s"], "{:.3f} s"),
    ]
    lines = ["| measure | Flue, Postgres | DBOS 3.4, Postgres | ratio |", "|---|---:|---:|---:|"]
    ratios = {
        "sequential admission rate": lambda: flue["sequential"]["rate"] / dbos["sequential"]["rate"],
        "32 concurrent callers: rate": lambda: flue["concurrent"]["rate"] / dbos["concurrent"]["rate"],
        "end-to-end p50": lambda: flue["end_to_end"]["p50_ms"] / dbos["end_to_end"]["p50_ms"],
        "1,000 events to a follower, burst (median)": lambda: dbos["events"]["median_s"] / flue["events"]["burst"]["median_s"],
    }
    for label, pick, unit in rows:
        try:
            ratio = f"{ratios[label]():.2f}×" if label in ratios else ""
        except (KeyError, TypeError, ZeroDivisionError):
            ratio = "—"
        lines.append(f"| {label} | {cell(flue, pick, unit)} | {cell(dbos, pick, unit)} | {ratio} |")
    for name, source in (("Flue", flue), ("DBOS", dbos)):
        if source.get("curve"):
            lines += ["", f"{name}, admission as stored runs grow:", "", "| runs stored | p50 | p99 | rate |", "|---:|---:|---:|---:|"]
            lines += [f"| {p['stored']:,} | {p['p50_ms']:.3f} ms | {p['p99_ms']:.3f} ms | {p['rate']:,.0f}/s |" for p in source["curve"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=5000)
    parser.add_argument("--concurrent", type=int, default=20000)
    parser.add_argument("--end-to-end", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=10000)
    parser.add_argument("--event-trials", type=int, default=5)
    parser.add_argument("--curve-max", type=int, default=100_000, help="stop the stored-runs curve here (0: skip it)")
    parser.add_argument("--curve-sequential", type=int, default=2000)
    parser.add_argument("--no-dbos", action="store_true", help="measure Flue only")
    parser.add_argument("--dbos-sequential", type=int, default=2000)
    parser.add_argument("--dbos-concurrent", type=int, default=4000)
    parser.add_argument("--dbos-end-to-end", type=int, default=500)
    parser.add_argument("--dbos-curve-max", type=int, default=0, help="DBOS's stored-runs curve up to here (0: skip it)")
    args = parser.parse_args()
    server = PostgresServer().start()
    try:
        server.create_database("flue_bench")
        flue = anyio.run(measure, server, args)
        dbos: dict[str, Any] = {}
        if not args.no_dbos:
            server.create_database("dbos_bench")
            counts = (args.dbos_sequential, args.dbos_concurrent, args.dbos_end_to_end, args.event_trials, args.dbos_curve_max)
            dbos = measure_in_child("bench.dbos_postgres", server.url("dbos_bench").replace("postgres://", "postgresql://"), *counts)
        version = server.execute("postgres", "SHOW server_version").split()[2] if server.running else "?"
    finally:
        server.remove()
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg(), "postgres": version},
        "flue": flue,
        "dbos": dbos,
    }
    path = RESULTS / f"postgres-runs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(flue, dbos))
    print(f"\nbulk: {flue['bulk']['runs']:,} runs in {flue['bulk']['seconds']:.2f} s ({flue['bulk']['rate']:,.0f}/s); figures in {path}")


if __name__ == "__main__":
    main()

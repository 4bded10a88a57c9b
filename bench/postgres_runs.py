"""The Postgres run store (flue-postgres) beside DBOS 3.4 on Postgres, in one run on one server.

``bench/run postgres`` (``python -m bench.postgres_runs``) starts its own Postgres
(:class:`flue_postgres.server.PostgresServer`: ``initdb`` in a temporary folder, ``fsync`` and
``synchronous_commit`` on) and measures Flue on it the way :mod:`bench.redis_runs` measures the Redis
store (same workflows, same functions):

* **sequential admission**: an admit-only runtime (``Runtime(..., execute=False)``, a web process)
  awaits ``workflows.start(noop, input={"n": i})`` in a loop: p50, p99, rate; no worker runs meanwhile;
* **32 concurrent callers**: 32 tasks of that process starting runs in loops: rate, p50, p99;
* **end-to-end**: with 2 ``flue worker`` processes, ``start()`` then ``runs.result()`` from the
  admit-only process, one run at a time: p50, p99; and the same in a runtime that executes what it
  admits (its run claimed by its admission), as DBOS always does;
* **bulk**: 10,000 runs started by 32 callers and executed by the 2 workers, until the last has ended;
* **1,000 events to a follower in another process**: a run on a worker emits 1,000 events once the
  follower (this process) has signalled it to go; from the first emit to the follower holding the
  1,000th, burst and paced, median of 5;
* **stored runs**: finished runs are added until 1k, 10k, 50k and 100k are stored; at each point a
  ``CHECKPOINT`` writes out what the burst that stored them left in memory, the workers are paused
  (``SIGSTOP``) and 2,000 sequential admissions measured, with the schema's size on disk per run.

After each round of Flue's figures, DBOS 3.4 in a child process (:mod:`bench.dbos_postgres`) on a
database of its own on the same server: sequential and 32-thread ``start_workflow``,
``start_workflow().get_result()`` (executed in the starting process: DBOS's fastest path) and 1,000
``write_stream`` values read with ``read_stream``. Rounds alternate (``--rounds``, 3) so that the
machine's load, which moves on a shared machine, weighs on both alike; the table gives each round and
the median of the rounds' ratios. Then the stored-runs curves. Figures go to
``bench/results/postgres-runs-<time>.json`` (not committed); Markdown tables are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from bench.child import measure_in_child
from bench.redis_runs import WORKFLOWS, bulk, concurrent, end_to_end, events, paused, sequential, web, workers
from flue_core import Runtime, runs
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


async def checkpoint(url: str, vacuum: bool = False) -> None:
    """Write out what the burst that stored the runs left in memory (and with ``vacuum``, do the
    autovacuum's work on the schema's tables now rather than during the measurement)."""
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        if vacuum:
            await conn.execute('VACUUM (ANALYZE) "curve".runs, "curve".events, "curve".ready')
        await conn.execute("CHECKPOINT")
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
                await checkpoint(url, args.vacuum)  # the burst that stored them, written out before the measurement
                with paused(processes):
                    point = await sequential(rt, args.curve_sequential, 0)
                stored += args.curve_sequential  # (executed once the workers resume)
                points.append({"stored": target, "bytes_per_run": size / target, **point})
                print(f"  {target:>7,} stored: p50 {point['p50_ms']:.3f} ms, p99 {point['p99_ms']:.3f} ms,"
                      f" {point['rate']:,.0f}/s, {size / target:,.0f} B on disk per run", file=sys.stderr)  # fmt: skip
    return points


async def measure(server: PostgresServer, args: argparse.Namespace, round_: int) -> dict[str, Any]:
    """One round of Flue's figures, on schemas of this round's own."""
    out: dict[str, Any] = {}
    url = server.url("flue_bench", schema=f"admission{round_}")
    async with web(url) as rt:
        out["sequential"] = await sequential(rt, args.sequential, 500)
        print(f"sequential: {out['sequential']}", file=sys.stderr)
        out["concurrent"], _ = await concurrent(rt, 32, args.concurrent)
        print(f"concurrent: {out['concurrent']}", file=sys.stderr)
    url = server.url("flue_bench", schema=f"local{round_}")
    async with Runtime(WORKFLOWS, store=url) as rt:  # DBOS's way: executed by the process that starts it
        out["end_to_end_here"] = await end_to_end(rt, args.end_to_end)
        print(f"end-to-end in the admitting process: {out['end_to_end_here']}", file=sys.stderr)
    url = server.url("flue_bench", schema=f"executed{round_}")
    with workers(url):
        async with web(url) as rt:
            out["end_to_end"] = await end_to_end(rt, args.end_to_end)
            print(f"end-to-end: {out['end_to_end']}", file=sys.stderr)
            out["bulk"] = await bulk(rt, args.bulk)
            print(f"bulk: {out['bulk']}", file=sys.stderr)
            out["events"] = await events(rt, args.event_trials)
            print(f"events: {out['events']}", file=sys.stderr)
    return out


def dbos_round(server: PostgresServer, args: argparse.Namespace, round_: int, curve: int = 0) -> dict[str, Any]:
    """One round of DBOS's figures, in a child process, on a database of this round's own."""
    database = f"dbos_bench{round_}"
    server.create_database(database)
    counts = (args.dbos_sequential, args.dbos_concurrent, args.dbos_end_to_end, args.dbos_event_trials, curve)
    return measure_in_child("bench.dbos_postgres", server.url(database).replace("postgres://", "postgresql://"), *counts)


#: (label, figure, format, ratio: Flue's figure over DBOS's (``rate``), or DBOS's over Flue's (``time``)).
ROWS = [
    ("sequential admission p50", lambda r: r["sequential"]["p50_ms"], "{:.3f} ms", None),
    ("sequential admission p99", lambda r: r["sequential"]["p99_ms"], "{:.3f} ms", None),
    ("sequential admission rate", lambda r: r["sequential"]["rate"], "{:,.0f}/s", "rate"),
    ("32 concurrent callers: rate", lambda r: r["concurrent"]["rate"], "{:,.0f}/s", "rate"),
    ("32 concurrent callers: p50", lambda r: r["concurrent"]["p50_ms"], "{:.2f} ms", None),
    ("32 concurrent callers: p99", lambda r: r["concurrent"]["p99_ms"], "{:.2f} ms", None),
    ("end-to-end p50", lambda r: r["end_to_end"]["p50_ms"], "{:.2f} ms", "time"),
    ("end-to-end p99", lambda r: r["end_to_end"]["p99_ms"], "{:.2f} ms", None),
    ("end-to-end p50, executed in the admitting process (DBOS: always)", lambda r: r.get("end_to_end_here", r["end_to_end"])["p50_ms"], "{:.2f} ms", "time"),
    ("1,000 events to a follower (Flue: burst; DBOS: write_stream/read_stream), median", lambda r: r["events"]["burst"]["median_s"] if "burst" in r["events"] else r["events"]["median_s"], "{:.3f} s", "time"),
    ("1,000 events to a follower, paced (Flue), median", lambda r: r["events"]["paced"]["median_s"], "{:.3f} s", None),
    ("10,000 runs, 2 workers (Flue)", lambda r: r["bulk"]["rate"], "{:,.0f} runs/s", None),
]


def _pick(source: dict[str, Any], pick: Any) -> float | None:
    try:
        return float(pick(source))
    except (KeyError, TypeError):
        return None


def table(rounds: list[dict[str, Any]]) -> str:
    """Each measure per round (Flue / DBOS), and the median ratio over the rounds."""
    lines = [
        "| measure | " + " | ".join(f"round {n + 1}: Flue / DBOS" for n in range(len(rounds))) + " | median ratio |",
        "|---|" + "---:|" * (len(rounds) + 1),
    ]
    for label, pick, unit, kind in ROWS:
        cells, ratios = [], []
        for r in rounds:
            ours, theirs = _pick(r["flue"], pick), _pick(r["dbos"], pick)
            cells.append(" / ".join("—" if v is None else unit.format(v) for v in (ours, theirs)))
            if kind and ours and theirs:
                ratios.append(ours / theirs if kind == "rate" else theirs / ours)
        ratio = f"{statistics.median(ratios):.2f}×" if ratios else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def curve_table(points: list[dict[str, Any]], dbos: list[dict[str, Any]]) -> str:
    lines = ["| runs stored | Flue p50 | Flue p99 | Flue rate | disk per run | DBOS p50 | DBOS rate |", "|---:|---:|---:|---:|---:|---:|---:|"]
    theirs = {p["stored"]: p for p in dbos}
    for p in points:
        d = theirs.get(p["stored"])
        dbos_cells = f"{d['p50_ms']:.3f} ms | {d['rate']:,.0f}/s" if d else "— | —"
        lines.append(
            f"| {p['stored']:,} | {p['p50_ms']:.3f} ms | {p['p99_ms']:.3f} ms | {p['rate']:,.0f}/s | {p['bytes_per_run']:,.0f} B | {dbos_cells} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of Flue then DBOS (the machine's load moves both alike)")
    parser.add_argument("--sequential", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=10000)
    parser.add_argument("--end-to-end", type=int, default=500)
    parser.add_argument("--bulk", type=int, default=10000)
    parser.add_argument("--event-trials", type=int, default=5)
    parser.add_argument("--curve-max", type=int, default=100_000, help="stop the stored-runs curve here (0: skip it)")
    parser.add_argument("--curve-sequential", type=int, default=2000)
    parser.add_argument("--vacuum", action="store_true", help="VACUUM (ANALYZE) the runs' tables before each curve point")
    parser.add_argument("--no-dbos", action="store_true", help="measure Flue only")
    parser.add_argument("--dbos-sequential", type=int, default=1000)
    parser.add_argument("--dbos-concurrent", type=int, default=2000)
    parser.add_argument("--dbos-end-to-end", type=int, default=300)
    parser.add_argument("--dbos-event-trials", type=int, default=3)
    parser.add_argument("--dbos-curve-max", type=int, default=0, help="DBOS's stored-runs curve up to here (0: skip it)")
    args = parser.parse_args()
    server = PostgresServer().start()
    rounds: list[dict[str, Any]] = []
    report: dict[str, Any] = {"rounds": rounds}
    try:
        server.create_database("flue_bench")
        version = server.execute("postgres", "SHOW server_version").split()[2]
        for n in range(args.rounds):
            print(f"round {n + 1}", file=sys.stderr)
            flue = anyio.run(measure, server, args, n)
            dbos = {} if args.no_dbos else dbos_round(server, args, n)
            rounds.append({"flue": flue, "dbos": dbos, "load": os.getloadavg()})
        if args.curve_max:
            report["curve"] = anyio.run(curve, server.url("flue_bench", schema="curve"), args)
        if args.dbos_curve_max and not args.no_dbos:
            report["dbos_curve"] = dbos_round(server, args, args.rounds, args.dbos_curve_max).get("curve", [])
    finally:
        server.remove()
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "postgres": version}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"postgres-runs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(rounds))
    if report.get("curve"):
        print()
        print(curve_table(report["curve"], report.get("dbos_curve", [])))
    print(f"\nfigures in {path}")


if __name__ == "__main__":
    main()

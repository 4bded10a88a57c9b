"""The Redis stream store: append rate, and append → live reader latency across two processes.

``bench/run redis`` (``python -m bench.redis_streams``) starts its own ``redis-server`` (AOF on,
``appendfsync everysec`` unless ``--appendfsync always``) in a temporary directory and measures:

* **sequential appends**: one caller, ``await store.append(...)`` of a 100-byte text record in a loop;
* **32 concurrent appenders**: 32 tasks of one process appending to 32 streams;
* **append → reader in another process**: a child process follows a stream the way the stream server
  does (a :class:`~flue_core.changes.Changes` watch, woken by the change feed, then ``read``); every
  record carries the CLOCK_MONOTONIC time (one clock for every process of the host) just before its
  append, and the reader subtracts it from the time it got the record. *Paced*: one append every
  2 ms; *burst*: 1,000 appends back to back, timed from the first append to the reader holding the
  last record (median of 5).

The same cross-process measurements run on the SQLite stream store for comparison (``--no-sqlite``
skips them): SQLite tells no other process of a write, so its readers find records by re-reading
every second. Figures go to ``bench/results/redis-streams-<time>.json`` (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import latency
from flue_core.changes import Changes
from flue_core.streams.store import Append, NewStream, StreamStore
from flue_node_like.streams_redis import RedisStreamStore
from flue_node_like.streams_sqlite import SqliteStreamStore
from flue_node_like.redis_server import RedisServer

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
PAD = b"x" * 80


def make_store(location: str) -> StreamStore:
    return RedisStreamStore(location) if location.startswith("redis") else SqliteStreamStore(location)


def record(n: int) -> Append:
    return Append(f"{time.monotonic():.9f} {n:08d} ".encode() + PAD, content_type="text/plain")


async def sequential(location: str, count: int) -> dict[str, Any]:
    store = make_store(location)
    await store.open(lambda paths: None)
    try:
        await store.create("/seq", NewStream("text/plain"))
        for n in range(200):  # warm-up
            await store.append("/seq", record(n))
        samples = []
        started = time.perf_counter()
        for n in range(count):
            before = time.perf_counter()
            await store.append("/seq", record(n))
            samples.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return {"appends": count, "rate": count / elapsed, **latency(samples)}


async def concurrent(location: str, callers: int, count: int) -> dict[str, Any]:
    store = make_store(location)
    await store.open(lambda paths: None)
    samples: list[float] = []
    try:
        for caller in range(callers):
            await store.create(f"/c{caller}", NewStream("text/plain"))

        async def append_loop(caller: int) -> None:
            for n in range(count // callers):
                before = time.perf_counter()
                await store.append(f"/c{caller}", record(n))
                samples.append(time.perf_counter() - before)

        started = time.perf_counter()
        await asyncio.gather(*(append_loop(caller) for caller in range(callers)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return {"callers": callers, "appends": len(samples), "rate": len(samples) / elapsed, **latency(samples)}


# -- across processes ----------------------------------------------------------------------------------


async def follow(location: str, path: str, count: int) -> None:
    """The reader process: follow ``path`` until ``count`` records arrived; print one JSON line with
    each record's latency and the time the last one arrived."""
    changes = Changes()
    store = make_store(location)
    await store.open(changes.notify)
    recheck = 1.0  # what the stream server waits at most before re-reading a shared store
    latencies: list[float] = []
    last_arrival = 0.0
    try:
        after = 0
        print("ready", flush=True)
        with changes.watch(path) as watch:
            while len(latencies) < count:
                page = await store.read(path, after, 1000, 1 << 20)
                now = time.monotonic()
                for data in page.records:
                    latencies.append(now - float(data.split(b" ", 1)[0]))
                after = page.next
                last_arrival = now
                if not page.records:
                    await watch.wait(recheck)
    finally:
        await store.close()
    print(json.dumps({"latencies": latencies, "last_arrival": last_arrival}), flush=True)


async def across_processes(location: str, count: int, pace: float | None) -> dict[str, Any]:
    """Append ``count`` records (one every ``pace`` seconds, or back to back) while a reader follows in
    another process."""
    store = make_store(location)
    await store.open(lambda paths: None)
    path = f"/x{time.monotonic_ns()}"
    await store.create(path, NewStream("text/plain"))
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.redis_streams", "--follow", location, path, str(count),
        cwd=ROOT, stdout=subprocess.PIPE,
    )
    assert reader.stdout is not None
    try:
        assert (await reader.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(0.2)  # the reader is waiting
        first = time.monotonic()
        for n in range(count):
            await store.append(path, record(n))
            if pace:
                await asyncio.sleep(pace)
        last = time.monotonic()
        outcome = json.loads(await reader.stdout.readline())
    finally:
        await reader.wait()
        await store.close()
    return {
        "latencies": outcome["latencies"],
        "all_arrived_after": outcome["last_arrival"] - first,
        "appending_took": last - first,
    }


async def cross_process(location: str, paced: int, bursts: int) -> dict[str, Any]:
    paced_run = await across_processes(location, paced, 0.002)
    burst_runs = [await across_processes(location, 1000, None) for _ in range(bursts)]
    return {
        "paced": {"records": paced, "every_ms": 2, **latency(paced_run["latencies"])},
        "burst_1000": {
            "runs": [run["all_arrived_after"] for run in burst_runs],
            "median_s": statistics.median(run["all_arrived_after"] for run in burst_runs),
            "appending_took_median_s": statistics.median(run["appending_took"] for run in burst_runs),
        },
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {"appendfsync": args.appendfsync}
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        server = RedisServer(Path(scratch) / "redis", appendfsync=args.appendfsync).start()
        try:
            url = server.url(prefix="bench")
            report["redis"] = {
                "sequential": await sequential(url, args.appends),
                "concurrent": await concurrent(url, 32, args.appends * 4),
                "cross_process": await cross_process(url, args.paced, args.bursts),
            }
        finally:
            server.stop()
        if args.sqlite:
            database = str(Path(scratch) / "streams.db")
            report["sqlite"] = {
                "sequential": await sequential(database, args.appends),
                "cross_process": await cross_process(database, min(args.paced, 200), 1),
            }
    return report


def table(report: dict[str, Any]) -> str:
    rows = [("measure", "Redis", "SQLite")]
    redis, sqlite = report["redis"], report.get("sqlite", {})

    def cell(store: dict[str, Any], *keys: str, unit: str = "") -> str:
        value: Any = store
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return "—"
            value = value[key]
        return f"{value:,.0f}{unit}" if unit == "/s" else f"{value:.3f}{unit}"

    rows += [
        ("sequential append p50", cell(redis, "sequential", "p50_ms", unit=" ms"), cell(sqlite, "sequential", "p50_ms", unit=" ms")),
        ("sequential append p99", cell(redis, "sequential", "p99_ms", unit=" ms"), cell(sqlite, "sequential", "p99_ms", unit=" ms")),
        ("sequential append rate", cell(redis, "sequential", "rate", unit="/s"), cell(sqlite, "sequential", "rate", unit="/s")),
        ("32 concurrent appenders: rate", cell(redis, "concurrent", "rate", unit="/s"), "—"),
        ("32 concurrent appenders: p50 / p99", f"{cell(redis, 'concurrent', 'p50_ms')} / {cell(redis, 'concurrent', 'p99_ms', unit=' ms')}", "—"),
        ("append → reader in another process, paced: p50", cell(redis, "cross_process", "paced", "p50_ms", unit=" ms"), cell(sqlite, "cross_process", "paced", "p50_ms", unit=" ms")),
        ("append → reader in another process, paced: p99", cell(redis, "cross_process", "paced", "p99_ms", unit=" ms"), cell(sqlite, "cross_process", "paced", "p99_ms", unit=" ms")),
        ("1,000 records to a reader in another process (median)", cell(redis, "cross_process", "burst_1000", "median_s", unit=" s"), cell(sqlite, "cross_process", "burst_1000", "median_s", unit=" s")),
        ("  of which appending them took", cell(redis, "cross_process", "burst_1000", "appending_took_median_s", unit=" s"), cell(sqlite, "cross_process", "burst_1000", "appending_took_median_s", unit=" s")),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"| {' | '.join(cell.ljust(widths[i]) for i, cell in enumerate(row))} |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="bench/run redis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--appendfsync", choices=["everysec", "always"], default="everysec")
    parser.add_argument("--appends", type=int, default=5000, help="sequential appends (32 callers: 4x)")
    parser.add_argument("--paced", type=int, default=1000, help="paced records to the other process")
    parser.add_argument("--bursts", type=int, default=5, help="bursts of 1,000 records (median)")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="skip the SQLite column")
    parser.add_argument("--follow", nargs=3, metavar=("STORE", "PATH", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        location, path, count = args.follow
        asyncio.run(follow(location, path, int(count)))
        return
    report = asyncio.run(main(args))
    out = RESULTS / f"redis-streams-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nappendfsync {args.appendfsync}; figures in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    cli()

"""The Redis run store: admission, end-to-end latency and throughput with worker processes, events to a
follower in another process, and the cost as stored runs grow — then the peers on the same Redis.

``bench/run redis-runs`` (``python -m bench.redis_runs``) starts its own ``redis-server`` (AOF on,
``appendfsync everysec`` unless ``--appendfsync always``) in a temporary directory, and measures on it:

* **sequential admission**: an admit-only runtime (``Runtime(..., execute=False)``, a web process)
  awaits ``workflows.start(noop, input={"n": i})`` in a loop: p50, p99, rate. No worker runs meanwhile
  (the ready pool fills, as a queue's would with its workers stopped);
* **32 concurrent callers**: 32 tasks of that process starting runs in loops: rate, p50, p99;
* **end-to-end**: with 2 ``flue worker`` processes, ``start()`` then ``runs.result()`` from the
  admit-only process, one run at a time: p50, p99;
* **bulk**: 10,000 runs started by 32 callers of the admit-only process and executed by the 2
  workers: seconds from the first start to the last run's end, runs per second (and the Redis
  server's CPU per run, admission and execution, from ``/proc``; likewise per admission for the
  32 callers);
* **1,000 events to a follower in another process**: a run executing on a worker emits 1,000 events
  once the follower (the benchmark process, ``runs.events(follow=True)``) has signalled it to go; time
  from the first emit (its wall time is in the event) to the follower holding the 1,000th. *Burst*:
  back to back; *paced*: the workflow yields after each. Median of 5;
* **stored runs**: finished runs are added until 1k, 10k, 50k and 100k are stored; at each point
  the workers are paused (``SIGSTOP``) and 2,000 sequential admissions measured; Redis's memory per
  stored run is read from ``INFO memory``.

Then ``bench.redis_peers`` measures ARQ, Celery, Taskiq and RQ on the same server (``--no-peers``
skips them). Figures go to ``bench/results/redis-runs-<time>.json`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.redis_workflows import emitter, noop
from bench.stats import latency
from flue_core import Runtime, runs, workflows
from flue_node_like.redis_server import RedisServer

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
WORKFLOWS = [noop, emitter]
CURVE = (1_000, 10_000, 50_000, 100_000)


def redis_cpu(server: RedisServer) -> float:
    """Seconds of CPU the server has used so far (from ``/proc``)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def web(url: str) -> Runtime:
    return Runtime(WORKFLOWS, store=url, execute=False)


@contextmanager
def workers(url: str, count: int = 2, concurrency: int = 32) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` ``flue worker bench.redis_workflows`` processes, stopped with SIGTERM at the end."""
    started = []
    try:
        for _ in range(count):
            process = subprocess.Popen(
                [sys.executable, "-m", "flue_core.cli", "worker", "bench.redis_workflows", "--store", url,
                 "--concurrency", str(concurrency)],
                cwd=ROOT, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            started.append(process)
            assert process.stderr is not None and "executing" in process.stderr.readline(), "a worker did not start"
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=30)


@contextmanager
def paused(processes: list[subprocess.Popen[str]]) -> Iterator[None]:
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


async def sequential(rt: Runtime, count: int, warmup: int) -> dict[str, Any]:
    for n in range(warmup):
        await workflows.start(noop, input={"n": n}, runtime=rt)
    samples = []
    started = time.perf_counter()
    for n in range(count):
        before = time.perf_counter()
        await workflows.start(noop, input={"n": n}, runtime=rt)
        samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    return {"admissions": count, "rate": count / elapsed, **latency(samples)}


async def concurrent(rt: Runtime, callers: int, total: int) -> tuple[dict[str, Any], list[str]]:
    samples: list[float] = []
    run_ids: list[str] = []
    shares = [total // callers + (1 if k < total % callers else 0) for k in range(callers)]

    async def caller(each: int) -> None:
        for n in range(each):
            before = time.perf_counter()
            receipt = await workflows.start(noop, input={"n": n}, runtime=rt)
            samples.append(time.perf_counter() - before)
            run_ids.append(receipt.run_id)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for each in shares:
            tasks.start_soon(caller, each)
    elapsed = time.perf_counter() - started
    return {"admissions": total, "callers": callers, "rate": total / elapsed, **latency(samples)}, run_ids


async def end_to_end(rt: Runtime, count: int) -> dict[str, Any]:
    samples = []
    for n in range(count + 50):
        before = time.perf_counter()
        receipt = await workflows.start(noop, input={"n": n}, runtime=rt)
        await runs.result(receipt.run_id, runtime=rt)
        if n >= 50:  # warm-up: the workers' first runs
            samples.append(time.perf_counter() - before)
    return {"runs": count, **latency(samples)}


async def bulk(rt: Runtime, total: int) -> dict[str, Any]:
    started = time.perf_counter()
    admitted, run_ids = await concurrent(rt, 32, total)
    admitted_after = time.perf_counter() - started
    for run_id in run_ids:
        await runs.wait(run_id, runtime=rt)
    elapsed = time.perf_counter() - started
    return {"runs": len(run_ids), "seconds": elapsed, "rate": len(run_ids) / elapsed, "admitted_after": admitted_after}


async def follower(rt: Runtime, count: int, paced: bool) -> float:
    receipt = await workflows.start(emitter, input={"count": count, "paced": paced}, runtime=rt)
    first_emit = None
    sent = False
    async for event in runs.events(receipt.run_id, follow=True, runtime=rt):
        if event.type == "run_waiting" and not sent:
            await runs.signal(receipt.run_id, "go", runtime=rt)
            sent = True
        elif event.type == "tick":
            if event.data["n"] == 0:
                first_emit = event.data["t"]
            if event.data["n"] == count - 1:
                assert first_emit is not None
                return time.time() - first_emit
    raise AssertionError("the emitter ended without its last tick")


async def events(rt: Runtime, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for paced in (False, True):
        seconds = [await follower(rt, 1000, paced) for _ in range(trials)]
        out["paced" if paced else "burst"] = {"median_s": statistics.median(seconds), "all_s": seconds}
    return out


def used_memory(server: RedisServer) -> int:
    import redis

    client = redis.Redis(port=server.port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


async def curve(server: RedisServer, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    stored = 0
    base = used_memory(server)
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
                memory = used_memory(server) - base
                with paused(processes):
                    point = await sequential(rt, args.curve_sequential, 0)
                stored += args.curve_sequential  # (executed once the workers resume)
                points.append({"stored": target, "memory_per_run": memory / target, **point})
                print(f"  {target:>7,} stored: p50 {point['p50_ms']:.3f} ms, {point['rate']:,.0f}/s,"
                      f" {memory / target:,.0f} B of Redis memory per run", file=sys.stderr)  # fmt: skip
    return points


async def measure(server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    url = server.url(prefix="admission")
    async with web(url) as rt:
        out["sequential"] = await sequential(rt, args.sequential, 500)
        print(f"sequential: {out['sequential']}", file=sys.stderr)
        before = redis_cpu(server)
        out["concurrent"], _ = await concurrent(rt, 32, args.concurrent)
        out["concurrent"]["redis_cpu_us"] = (redis_cpu(server) - before) / args.concurrent * 1e6
        print(f"concurrent: {out['concurrent']}", file=sys.stderr)
    url = server.url(prefix="executed")
    with workers(url):
        async with web(url) as rt:
            out["end_to_end"] = await end_to_end(rt, args.end_to_end)
            print(f"end-to-end: {out['end_to_end']}", file=sys.stderr)
            before = redis_cpu(server)
            out["bulk"] = await bulk(rt, args.bulk)
            out["bulk"]["redis_cpu_us"] = (redis_cpu(server) - before) / args.bulk * 1e6
            print(f"bulk: {out['bulk']}", file=sys.stderr)
            out["events"] = await events(rt, args.event_trials)
            print(f"events: {out['events']}", file=sys.stderr)
    if args.curve_max:
        out["curve"] = await curve(server, server.url(prefix="curve"), args)
    return out


def table(flue: dict[str, Any], peers: dict[str, Any]) -> str:
    names = [name for name in ("arq", "celery", "taskiq", "rq") if name in peers]
    rows = [
        ("sequential enqueue p50", f"{flue['sequential']['p50_ms']:.3f} ms", lambda p: f"{p['sequential']['p50_ms']:.3f} ms"),
        ("sequential enqueue p99", f"{flue['sequential']['p99_ms']:.3f} ms", lambda p: f"{p['sequential']['p99_ms']:.3f} ms"),
        ("sequential enqueue rate", f"{flue['sequential']['rate']:,.0f}/s", lambda p: f"{p['sequential']['rate']:,.0f}/s"),
        ("32 concurrent callers", f"{flue['concurrent']['rate']:,.0f}/s", lambda p: f"{p['concurrent']['rate']:,.0f}/s"),
        ("enqueue → done p50", f"{flue['end_to_end']['p50_ms']:.2f} ms", lambda p: f"{p['end_to_end']['p50_ms']:.2f} ms"),
        ("enqueue → done p99", f"{flue['end_to_end']['p99_ms']:.2f} ms", lambda p: f"{p['end_to_end']['p99_ms']:.2f} ms"),
    ]
    lines = ["| measure | Flue | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for label, ours, theirs in rows:
        lines.append(f"| {label} | {ours} | " + " | ".join(_cell(theirs, peers[name]) for name in names) + " |")
    return "\n".join(lines)


def _cell(render: Any, figures: dict[str, Any]) -> str:
    try:
        return render(figures)
    except (KeyError, TypeError):
        return "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appendfsync", choices=["everysec", "always"], default="everysec")
    parser.add_argument("--sequential", type=int, default=5000)
    parser.add_argument("--concurrent", type=int, default=20000)
    parser.add_argument("--end-to-end", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=10000)
    parser.add_argument("--event-trials", type=int, default=5)
    parser.add_argument("--curve-max", type=int, default=100_000, help="stop the stored-runs curve here (0: skip it)")
    parser.add_argument("--curve-sequential", type=int, default=2000)
    parser.add_argument("--no-peers", action="store_true", help="measure Flue only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flue-bench-redis-") as directory:
        server = RedisServer(Path(directory), appendfsync=args.appendfsync).start()
        try:
            flue = anyio.run(measure, server, args)
            peers = {}
            if not args.no_peers:
                from bench import redis_peers

                peers = redis_peers.measure_all(server.url())
        finally:
            server.stop()
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "appendfsync": args.appendfsync,
        "flue": flue,
        "peers": peers,
    }
    path = RESULTS / f"redis-runs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(flue, peers))
    print(f"\nbulk: {flue['bulk']['runs']:,} runs in {flue['bulk']['seconds']:.2f} s ({flue['bulk']['rate']:,.0f}/s);"
          f" 1,000 events to a follower: burst {flue['events']['burst']['median_s']:.3f} s,"
          f" paced {flue['events']['paced']['median_s']:.3f} s; figures in {path}")  # fmt: skip


if __name__ == "__main__":
    main()

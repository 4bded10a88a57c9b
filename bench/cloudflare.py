"""The Cloudflare target on a local workerd beside the local target on SQLite, in the same run.

    python -m bench.cloudflare            # or: bench/run cloudflare

Both serve the same HTTP surface to the same client (httpx, on this host): the Worker
(``bench/workers/flue_bench.py``: runs executed by their own Durable Objects) and the local target
(``bench/http_server.py sqlite``: uvicorn, SQLite). For each:

* admission latency: sequential ``POST /workflows/noop``;
* admission rate: concurrent clients posting ``noop``;
* end to end: sequential ``POST /workflows/noop?wait=result`` (admitted, executed, answered);
* event latency: a run emits ``tick`` events carrying ``time.time()``; an SSE reader on this host
  (``GET /runs/<id>?live=sse``) subtracts it from the time it parsed each;

and, for scale, the latency of one request that writes to a Durable Object (by RPC and by fetch;
to an existing object and to a new one) or reaches none, from ``bench/workers/do_latency.py``, and of
a request answered by Flue's HTTP app in the Worker without reaching an object (a 404). The
sequential requests of all of them are interleaved, so they are measured under the same load of the
machine. Results go to ``bench/results/cloudflare-<time>.json``, with the ratios of admission and
end to end to a new object's first write.

    python -m bench.cloudflare --trace 200   # where the time goes, from marks taken in the isolate

traces admissions and ``?wait=result`` requests one at a time through ``bench/workers/flue_trace.py``
(the same Worker with a timestamp at each boundary a request crosses).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from httpx_sse import connect_sse

from bench.http_process import server
from bench.workerd_foundation import app as do_latency_app
from bench.workerd_foundation import summary, write_results
from flue_cloudflare.devtools import Cache, LocalWorker, WorkerApp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def flue_app(baseline: Path | None = None) -> WorkerApp:
    """The bench Worker; with ``baseline``, a folder holding another ``flue_cloudflare``, with that."""
    if baseline is None:
        return WorkerApp.flue("flue-bench", BENCH / "workers" / "flue_bench.py")
    main = BENCH / "workers" / "flue_bench.py"
    return WorkerApp.flue("flue-bench-baseline", main, package_folders={"flue_cloudflare": baseline / "flue_cloudflare"})


def checked_out(revision: str, into: Path) -> Path:
    """``flue_cloudflare`` as it was at git ``revision``, in ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "flue_cloudflare"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@contextmanager
def servers(cache: Cache, baseline: str | None = None) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """Base URLs, all warm: the Worker on workerd, the local target on SQLite, and the reference Worker
    whose requests each write once to a Durable Object (with ``baseline``, a git revision, also the
    Worker with ``flue_cloudflare`` as it was then); and the process ids of the Flue servers."""
    with (
        tempfile.TemporaryDirectory(prefix="flue-bench-cf-") as scratch,
        server("sqlite", pin=False) as local,
    ):
        workers = {
            "workerd": LocalWorker(flue_app(), Path(scratch) / "flue", cache=cache),
            "reference": LocalWorker(do_latency_app(), Path(scratch) / "reference", cache=cache, ready_path="/noop"),
        }
        if baseline is not None:
            before = checked_out(baseline, Path(scratch) / "baseline-code")
            workers["baseline"] = LocalWorker(flue_app(before), Path(scratch) / "baseline", cache=cache)
        try:
            for worker in workers.values():
                worker.start()
            urls = {"sqlite": local.url, **{name: worker.url for name, worker in workers.items()}}
            pids = {"sqlite": local.process.pid}
            for name, worker in workers.items():
                if name != "reference":
                    assert worker.workerd.pid is not None
                    pids[name] = worker.workerd.pid
            yield urls, pids
        finally:
            for worker in workers.values():
                worker.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved(
    requests: dict[str, Callable[[int], httpx.Response]],
    count: int,
    warm_up: int = 20,
    then: tuple[dict[str, Callable[[int], httpx.Response]], ...] = (),
) -> dict[str, Any]:
    """Each request in turn, ``count`` rounds (after ``warm_up``): the figures of all of them are taken
    under the same load of this machine, so they compare even when that load varies. The groups of
    ``then`` come last in a round, each group's requests in turn, the groups in turns of order (the
    Worker and its baseline: each follows the other's run, which executes after its admission
    answered, as often as the other follows it)."""
    samples: dict[str, list[float]] = {name: [] for group in (requests, *then) for name in group}
    for round_ in range(-warm_up, count):
        groups = then[round_ % len(then) :] + then[: round_ % len(then)] if then else ()
        for group in (requests, *groups):
            for name, request in group.items():
                began = time.perf_counter()
                response = request(round_)
                elapsed = time.perf_counter() - began
                assert response.status_code < 300 or response.status_code == 404, response.text
                if round_ >= 0:
                    samples[name].append(elapsed)
    return {name: summary(found) for name, found in samples.items()}


async def rate(url: str, clients: int, total: int) -> dict[str, float]:
    """``total`` admissions by ``clients`` concurrent callers (one connection each)."""
    samples: list[float] = []
    remaining = total

    async def caller() -> None:
        nonlocal remaining
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                response = await client.post("/workflows/noop")
                samples.append(time.perf_counter() - began)
                assert response.status_code == 202, response.text

    began = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(clients):
            tasks.start_soon(caller)
    elapsed = time.perf_counter() - began
    return {"per_second": total / elapsed, **summary(samples)}


def event_latency(client: httpx.Client, kind: str, count: int, per_second: float) -> dict[str, float]:
    """Latency from ``ctx.emit`` in the run to an SSE reader on this host."""
    gate = None
    if kind == "workerd":
        run_id = client.post("/workflows/ticker", json={"count": count, "rate": per_second}).json()["runId"]
    else:
        gate = Path(tempfile.mkdtemp(prefix="flue-bench-gate-")) / "go"
        body = {"count": count, "rate": per_second, "gate": str(gate)}
        run_id = client.post("/workflows/ticker", json=body).json()["runId"]
    lags: list[float] = []
    with connect_sse(client, "GET", f"/runs/{run_id}", params={"offset": "-1", "live": "sse"}) as source:
        if kind == "workerd":
            assert client.post(f"/bench/go/{run_id}").status_code == 202
        else:
            assert gate is not None
            gate.touch()
        for message in source.iter_sse():
            if message.event != "data":
                continue
            now = time.time()
            for event in json.loads(message.data):
                if event["type"] == "tick":
                    lags.append(now - event["data"]["t"])
            if len(lags) >= count:
                break
    return summary(lags)


def measure(count: int, clients: int, ticks: int, baseline: str | None = None) -> dict[str, Any]:
    with servers(Cache.default(ROOT), baseline) as (urls, pids), ExitStack() as stack:
        client = {kind: stack.enter_context(httpx.Client(base_url=url, timeout=60)) for kind, url in urls.items()}
        reference, workerd, sqlite = client["reference"], client["workerd"], client["sqlite"]
        before: dict[str, Callable[[int], httpx.Response]] = {}
        waited: dict[str, Callable[[int], httpx.Response]] = {}
        if "baseline" in client:
            old = client["baseline"]
            before["baseline: admission"] = lambda n: old.post("/workflows/noop")
            waited["baseline: POST ?wait=result"] = lambda n: old.post("/workflows/noop", params={"wait": "result"})
        results: dict[str, Any] = {}
        results["sequential requests"] = interleaved(
            {
                "reference: Worker only, no object": lambda n: reference.get("/noop"),
                "reference: DO RPC, one SQL write": lambda n: reference.post("/rpc/run_warm/write", content="x"),
                "reference: DO fetch, one SQL write": lambda n: reference.post("/fetch/run_warm/write", content="x"),
                "reference: DO RPC, first write to a new object": lambda n: reference.post(
                    f"/rpc/run_new_{uuid.uuid4().hex}/write", content="x"
                ),
                "sqlite: admission": lambda n: sqlite.post("/workflows/noop"),
            },
            count,
            # The Workers' own requests come last in a round, well after the run each one's admission
            # started last round has executed (the isolate has one thread for everything).
            then=tuple(
                group
                for group in (
                    {
                        "workerd: Flue's HTTP app only (a 404, no object)": lambda n: workerd.get("/runs"),
                        "workerd: admission": lambda n: workerd.post("/workflows/noop"),
                    },
                    before,
                )
                if group
            ),
        )
        time.sleep(2)  # the runs just admitted finish executing
        used = {kind: cpu_seconds(pid) for kind, pid in pids.items()}
        results["end to end"] = interleaved(
            {
                "reference: DO RPC, first write to a new object": lambda n: reference.post(
                    f"/rpc/run_new_{uuid.uuid4().hex}/write", content="x"
                ),
                "sqlite: POST ?wait=result": lambda n: sqlite.post("/workflows/noop", params={"wait": "result"}),
            },
            count // 2,
            warm_up=0,
            then=tuple(
                group
                for group in (
                    {"workerd: POST ?wait=result": lambda n: workerd.post("/workflows/noop", params={"wait": "result"})},
                    waited,
                )
                if group
            ),
        )
        time.sleep(1)
        # Everything a run costs its server: admission, execution, the index, the answer (and, for
        # workerd, the isolate every object and the Worker share: one thread).
        results["CPU per run (end to end)"] = {
            kind: {"cpu_ms": (cpu_seconds(pid) - used[kind]) / (count // 2) * 1000} for kind, pid in pids.items()
        }
        results["admission rate"] = {
            kind: anyio.run(rate, urls[kind], clients, count * 2) for kind in ("workerd", "sqlite")
        }
        time.sleep(2)
        results["event to SSE reader"] = {
            kind: event_latency(client[kind], kind, ticks, 20.0) for kind in ("workerd", "sqlite")
        }
    return results


def trace(count: int) -> dict[str, Any]:
    """Where an admission's and an end-to-end request's time goes, in the isolate: the mean time after
    the Worker's handler began of each mark ``bench/workers/flue_trace.py`` takes, over ``count``
    requests of each, one at a time with a pause after each (so the run's execution is traced too)."""
    app = WorkerApp.flue(
        "flue-trace", BENCH / "workers" / "flue_trace.py", sources=(BENCH / "workers" / "flue_bench.py",)
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flue-bench-trace-") as scratch:
        worker = LocalWorker(app, Path(scratch) / "trace", cache=Cache.default(ROOT))
        worker.start()
        try:
            with httpx.Client(base_url=worker.url, timeout=60) as client:
                for kind, params in (("admission", {}), ("end to end", {"wait": "result"})):
                    marks: dict[str, list[float]] = {}
                    took: list[float] = []
                    for round_ in range(-10, count):
                        client.get("/bench/trace")
                        began = time.perf_counter()
                        assert client.post("/workflows/noop", params=params).status_code < 300
                        elapsed = time.perf_counter() - began
                        time.sleep(0.05)  # the alarm's part, if any
                        found = client.get("/bench/trace").json()
                        if round_ < 0:
                            continue
                        took.append(elapsed)
                        seen: dict[str, int] = {}
                        for label, at in found:
                            seen[label] = seen.get(label, 0) + 1
                            key = label if seen[label] == 1 else f"{label} #{seen[label]}"
                            marks.setdefault(key, []).append((at - found[0][1]) * 1000)
                    timeline = sorted(((sum(v) / len(v), label, len(v)) for label, v in marks.items()))
                    results[kind] = {
                        "from the host": summary(took),
                        "marks": {label: {"mean_ms": mean, "seen": seen_in / count} for mean, label, seen_in in timeline},
                    }
        finally:
            worker.stop()
    return results


def print_trace(results: dict[str, Any]) -> None:
    for kind, found in results.items():
        print(f"{kind}: p50 {found['from the host']['p50_ms']:.2f} ms from the host; in the isolate (mean ms after fetch began):")
        for label, mark in found["marks"].items():
            share = "" if mark["seen"] == 1 else f"   (in {mark['seen']:.0%} of requests)"
            print(f"  {mark['mean_ms']:7.2f}  {label}{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="rounds of sequential requests (default 300)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the rate measure (default 16)")
    parser.add_argument("--ticks", type=int, default=200, help="events of the SSE measure, 20 a second (default 200)")
    parser.add_argument("--trace", type=int, metavar="N", help="instead: trace N admissions and N ?wait=result")
    parser.add_argument(
        "--baseline", metavar="REV", help="also the Worker with flue_cloudflare at git REV, interleaved (before/after)"
    )
    args = parser.parse_args()
    if args.trace:
        traced = trace(args.trace)
        print_trace(traced)
        write_results("cloudflare-trace", traced)
        return
    results = measure(args.count, args.clients, args.ticks, args.baseline)
    sequential, end_to_end = results["sequential requests"], results["end to end"]
    first = sequential["reference: DO RPC, first write to a new object"]["p50_ms"]
    ratios = {"admission": sequential["workerd: admission"]["p50_ms"] / first}
    if "baseline: admission" in sequential:
        ratios["baseline: admission"] = sequential["baseline: admission"]["p50_ms"] / first
    # End to end against the new object's first write measured in the same rounds.
    first = end_to_end["reference: DO RPC, first write to a new object"]["p50_ms"]
    ratios["end to end"] = end_to_end["workerd: POST ?wait=result"]["p50_ms"] / first
    if "baseline: POST ?wait=result" in end_to_end:
        ratios["baseline: end to end"] = end_to_end["baseline: POST ?wait=result"]["p50_ms"] / first
    results["against a new object's first write (p50)"] = ratios
    print(f"{'':52} {'p50':>9} {'p95':>9} {'p99':>9}")
    for section, rows in results.items():
        print(section)
        for name, figures in rows.items():
            if isinstance(figures, float):
                print(f"  {name:50} {figures:7.2f}x")
                continue
            if "cpu_ms" in figures:
                print(f"  {name:50} {figures['cpu_ms']:7.2f}ms of CPU")
                continue
            extra = f"  {figures['per_second']:6.0f} runs/s" if "per_second" in figures else ""
            print(
                f"  {name:50} {figures['p50_ms']:7.2f}ms {figures['p95_ms']:7.2f}ms {figures['p99_ms']:7.2f}ms{extra}"
            )
    write_results("cloudflare", results)


if __name__ == "__main__":
    main()

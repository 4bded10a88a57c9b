"""The HTTP benchmark of issue 3: admission over HTTP and event delivery to SSE followers.

``bench/run http`` (or ``python -m bench.http_bench``) starts the app in a server process of its own
(``bench/http_server.py``: uvicorn on 127.0.0.1 through :func:`flue_core.http.serve`) and drives it:

* ``POST /workflows/noop`` with a JSON body from wrk's 32 connections (:mod:`bench.http_wrk`): rate,
  p50/p99 latency and status codes, on the default SQLite store, the memory store, a bare Starlette
  route and a bare ASGI callable (the ceilings of the stack), each served by asyncio + h11 (uvicorn
  without its optional dependencies) and by uvloop + httptools; the rounds interleave the columns,
  so that the machine's other load spreads over all of them;
* with httpx from this process, event latency from ``ctx.emit`` to 100 SSE followers
  (``GET /runs/{id}?offset=-1&live=sse``) of one
  run that emits ``tick`` events at a steady rate: the time a follower has parsed an event minus the
  ``time.time()`` the workflow put in the event's data just before emitting it; and how many events
  each follower received (every one must receive each tick exactly once).

With two or more CPUs the server is pinned to one and the load generator (wrk, or this process) to
another. Each measurement gets a fresh server and a fresh temporary directory; each is preceded by a
warm-up on the same server.
Results go to ``bench/results/http-<time>.json``; a Markdown table is printed
(:mod:`bench.http_report`). :mod:`bench.http_process` starts and measures the server process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import anyio
import httpx
from anyio.abc import ObjectSendStream

from bench.http_process import CLIENT_CPU, RESULTS, SERVER_CPU, Server, Window, profiled, server
from bench.http_report import POST_MODES, SSE_MODES, STACKS, check, table
from bench.http_wrk import children_cpu_seconds, ensure_wrk, run_wrk
from bench.stats import latency, percentile

# -- POST /workflows/{name} ---------------------------------------------------------------------------

#: The JSON body every POST carries (the no-op workflow takes an object), with its content type.
POST_BODY = '{"caller": "wrk", "n": 1}'


def _drained(url: str, run_id: str) -> float:
    """Seconds until the last admitted run has completed (the server executes what it admits)."""
    began = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            record = client.get(f"/runs/{run_id}", params={"meta": ""}).json()
            if record["status"] not in ("queued", "running"):
                return time.perf_counter() - began
            time.sleep(0.005)


def measure_post(mode: str, stack: str, args: argparse.Namespace) -> dict[str, Any]:
    """wrk's ``args.connections`` connections posting for ``args.post_seconds`` after a warm-up of
    ``args.post_warmup`` seconds, on a fresh server."""
    cpu = CLIENT_CPU if args.pin else None
    with server(mode, args.pin, stack, args.concurrency) as srv:
        url = f"{srv.url}/workflows/noop"
        run_wrk(url, body=POST_BODY, connections=args.connections, seconds=args.post_warmup, cpu=cpu)
        name = args.profile and f"profile-post-{mode}-{stack}-{args.stamp}"
        with profiled(srv, name), Window(srv, children_cpu_seconds) as window:
            out = run_wrk(url, body=POST_BODY, connections=args.connections, seconds=args.post_seconds, cpu=cpu)
        out.update(window.summary())
        out["server_cpu_per_request_us"] = 1e6 * window.server_cpu / max(1, out["requests"])
        if mode in ("sqlite", "memory") and out["last_run"]:
            # Runs still queued when the load stops were admitted faster than they executed: the rate
            # at which runs were admitted *and* executed counts the time it took to drain them.
            out["drain_s"] = _drained(srv.url, out["last_run"])
            out["executed_per_s"] = out["requests"] / (out["duration_us"] / 1e6 + out["drain_s"])
        return out


# -- emit → SSE followers -----------------------------------------------------------------------------


@asynccontextmanager
async def _clients(url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` clients of one connection each, as many separate followers would be. (One client with
    a pool of ``count`` connections costs far more CPU here: httpcore scans its whole pool on every
    request, which made this process, not the server, the bottleneck.)"""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=60)
            )
            for _ in range(count)
        ]


@dataclass
class Follower:
    """One SSE reader of a run: what it received, and when it had parsed each tick."""

    latencies: list[float] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    emitted_at: dict[int, float] = field(default_factory=dict)
    data_frames: int = 0
    closed: bool = False

    async def follow(self, client: httpx.AsyncClient, run_id: str, attached: ObjectSendStream[None] | None) -> None:
        """Read the run's stream from its start until it closes; say on ``attached`` once caught up."""
        params = {"offset": "-1", "live": "sse"}
        headers = {"accept": "text/event-stream"}
        async with client.stream("GET", f"/runs/{run_id}", params=params, headers=headers) as response:
            if response.status_code != 200:
                raise RuntimeError(f"SSE read answered {response.status_code}: {(await response.aread())[:300]!r}")
            buffer = b""
            async for data in response.aiter_raw():
                buffer += data
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    kind, payload = _frame(frame)
                    if kind == "data":
                        self._received(json.loads(payload), time.time())
                        self.data_frames += 1
                    elif kind == "control":
                        if attached is not None:
                            await attached.send(None)  # caught up once: attached
                            attached = None
                        if json.loads(payload).get("streamClosed"):
                            self.closed = True
                            return

    def _received(self, events: list[dict[str, Any]], now: float) -> None:
        for event in events:
            self.indexes.append(event["index"])
            if event["type"] == "tick":
                data = event["data"]
                self.ticks.append(data["i"])
                self.latencies.append(now - data["t"])
                self.emitted_at[data["i"]] = data["t"]


def _frame(frame: bytes) -> tuple[str | None, str]:
    """``(event name, data)`` of one SSE frame (comments, such as heartbeats, have neither)."""
    kind, data = None, []
    for line in frame.decode("utf-8").split("\n"):
        name, _, value = line.partition(":")
        if name == "event":
            kind = value.removeprefix(" ")
        elif name == "data":
            data.append(value.removeprefix(" "))
    return kind, "\n".join(data)


async def _follow_run(
    clients: list[httpx.AsyncClient], srv: Server, count: int, rate: float
) -> tuple[list[Follower], Window]:
    """Start a ticker run, attach one reader per client, open the run's gate and follow it to its end."""
    gate = srv.directory / f"gate-{uuid.uuid4().hex}"
    response = await clients[0].post("/workflows/ticker", json={"count": count, "rate": rate, "gate": str(gate)})
    response.raise_for_status()
    run_id = response.json()["runId"]
    readers = [Follower() for _ in clients]
    send, receive = anyio.create_memory_object_stream[None](len(clients))
    window = Window(srv)
    async with anyio.create_task_group() as tasks:
        for reader, client in zip(readers, clients):
            tasks.start_soon(reader.follow, client, run_id, send)
        with anyio.fail_after(60):
            for _ in clients:
                await receive.receive()
        window.start()
        gate.touch()
    window.stop()
    return readers, window


def _delivery(readers: list[Follower], count: int, window: Window) -> dict[str, Any]:
    samples = [s for reader in readers for s in reader.latencies]
    # Per tick: when the first follower had it (the path without the fan-out), and the last (all had it).
    first: dict[int, float] = {}
    worst: dict[int, float] = {}
    for reader in readers:
        for i, seconds in zip(reader.ticks, reader.latencies):
            first[i] = min(first.get(i, math.inf), seconds)
            worst[i] = max(worst.get(i, 0.0), seconds)
    emitted = readers[0].emitted_at
    span = emitted[max(emitted)] - emitted[min(emitted)] if len(emitted) > 1 else 0.0
    return {
        "followers": len(readers),
        "events_each": count,
        **latency(samples),
        "max_ms": max(samples) * 1000,
        "first_follower_p50_ms": percentile(list(first.values()), 0.50) * 1000,
        "first_follower_p99_ms": percentile(list(first.values()), 0.99) * 1000,
        "all_followers_p50_ms": percentile(list(worst.values()), 0.50) * 1000,
        "all_followers_p99_ms": percentile(list(worst.values()), 0.99) * 1000,
        "ticks_received_min": min(len(r.ticks) for r in readers),
        "ticks_received_max": max(len(r.ticks) for r in readers),
        "followers_with_every_tick_once": sum(sorted(r.ticks) == list(range(count)) for r in readers),
        "followers_with_duplicate_events": sum(len(set(r.indexes)) != len(r.indexes) for r in readers),
        "followers_closed": sum(r.closed for r in readers),
        "emit_rate_per_s": (len(emitted) - 1) / span if span else None,
        "data_frames": sum(r.data_frames for r in readers),
        "events_received": sum(len(r.indexes) for r in readers),
        "server_cpu_per_frame_us": 1e6 * window.server_cpu / max(1, sum(r.data_frames for r in readers)),
        "client_cpu_per_frame_us": 1e6 * window.client_cpu / max(1, sum(r.data_frames for r in readers)),
        **window.summary(),
    }


async def measure_sse(mode: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per rate (``"200"``...): the delivery of ``seconds`` of ticks at that rate, on one server."""
    out = {}
    with server(mode, args.pin) as srv:
        async with _clients(srv.url, args.followers) as clients:
            await _follow_run(clients, srv, max(1, int(args.rates[0] * args.sse_warmup)), args.rates[0])
            for rate in args.rates:
                count = int(rate * args.seconds)
                with profiled(srv, args.profile and f"profile-sse-{mode}-{rate:g}-{args.stamp}"):
                    readers, window = await _follow_run(clients, srv, count, rate)
                out[f"{rate:g}"] = {"rate_per_s": rate, **_delivery(readers, count, window)}
    return out


def _versions() -> dict[str, str | None]:
    """The HTTP stack measured; uvicorn picks uvloop and httptools only when they are installed."""
    found: dict[str, str | None] = {}
    for name in ("uvicorn", "starlette", "h11", "httptools", "uvloop", "httpx", "httpcore", "sniffio", "anyio", "aiosqlite"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--post-seconds", type=float, default=10.0, help="seconds of POSTs measured per column")
    parser.add_argument("--post-warmup", type=float, default=2.0, help="seconds of POSTs before measuring")
    parser.add_argument("--connections", type=int, default=32, help="wrk's concurrent connections")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each POST column (medians shown)")
    parser.add_argument("--concurrency", type=int, help="the server's runs at a time (the local target's default: 16)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="servers for the POSTs, of: " + ", ".join(STACKS))
    parser.add_argument("--followers", type=int, default=100, help="SSE followers of the run")
    parser.add_argument("--rates", default="200,50", help="events emitted per second, one measurement each")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of emitting measured at each rate")
    parser.add_argument("--sse-warmup", type=float, default=1.0, help="seconds of emitting before measuring")
    parser.add_argument("--only", choices=("post", "sse"), help="run one of the two measurements")
    parser.add_argument("--stores", default=",".join(POST_MODES), help="columns, of: " + ", ".join(POST_MODES))
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and client to CPUs")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy while measuring")
    args = parser.parse_args(argv)
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        args.rates = [float(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates takes numbers separated by commas, not {args.rates!r}")
    modes = [m.strip() for m in args.stores.split(",") if m.strip()]
    if unknown := set(modes) - set(POST_MODES):
        parser.error(f"unknown --stores {sorted(unknown)}")
    stacks = [m.strip() for m in args.stacks.split(",") if m.strip()]
    if unknown := set(stacks) - set(STACKS):
        parser.error(f"unknown --stacks {sorted(unknown)}")
    args.pin = args.pin and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CPU})

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": _versions(),
        "settings": {
            key: getattr(args, key)
            for key in ("post_seconds", "post_warmup", "connections", "rounds", "concurrency", "followers", "rates",
                        "seconds", "sse_warmup", "pin")
        },
        "post": {},
        "sse": {},
    }
    if args.only != "sse":
        ensure_wrk()
        version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
        results["versions"]["wrk"] = version.split(" [")[0]
        for round in range(args.rounds):
            for stack in (s for s in STACKS if s in stacks):
                for mode in (m for m in POST_MODES if m in modes):
                    figures = measure_post(mode, stack, args)
                    results["post"].setdefault(stack, {}).setdefault(mode, []).append(figures)
                    drained = f", drained in {figures['drain_s']:.2f} s" if "drain_s" in figures else ""
                    print(f"round {round + 1}, {stack}, {mode}: {figures['per_s']:,.0f}/s,"
                          f" p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms,"
                          f" server CPU {figures['server_cpu_per_request_us']:.0f} µs/request{drained},"
                          f" others' CPU {figures['other_cpu_pct']:.0f} %", flush=True)
    if args.only != "post":
        for mode in (m for m in SSE_MODES if m in modes):
            results["sse"][mode] = anyio.run(measure_sse, mode, args)

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"http-{args.stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nResults: {path}")
    if problems := check(results):
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    main()

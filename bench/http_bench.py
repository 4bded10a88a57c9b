"""The HTTP benchmark of issue 3: admission over HTTP and event delivery to SSE followers.

``bench/run http`` (or ``python -m bench.http_bench``) starts the app in a server process of its own
(``bench/http_server.py``: uvicorn on 127.0.0.1 through :func:`flue_core.http.serve`) and drives it
with httpx from this process:

* ``POST /workflows/noop`` by 32 concurrent clients: rate, p50/p99 latency and status codes, on the
  default SQLite store, the memory store, and a bare Starlette route (the ceiling of the stack);
* event latency from ``ctx.emit`` to 100 SSE followers (``GET /runs/{id}?offset=-1&live=sse``) of one
  run that emits ``tick`` events at a steady rate: the time a follower has parsed an event minus the
  ``time.time()`` the workflow put in the event's data just before emitting it; and how many events
  each follower received (every one must receive each tick exactly once).

With two or more CPUs the server is pinned to one and this process to another. Each measurement gets
a fresh server and a fresh temporary directory; each is preceded by a warm-up on the same server.
Results go to ``bench/results/http-<time>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import ObjectSendStream

from bench.stats import latency, percentile

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
POST_MODES = ("sqlite", "memory", "bare")
SSE_MODES = ("sqlite", "memory")
LABELS = {"sqlite": "SQLite (default store)", "memory": "memory store", "bare": "bare Starlette route"}
SERVER_CPU, CLIENT_CPU = 0, 1


# -- the server process -------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process (all its threads) has used so far."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on; comm may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(mode: str, pin: bool) -> Iterator[Server]:
    """``python -m bench.http_server MODE`` in a fresh temporary directory (its working directory, so
    the default store ``sqlite:///.flue/flue.db`` lands there), stopped by closing its stdin."""
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        env = {k: v for k, v in os.environ.items() if k not in ("FLUE_STORE", "FLUE_TARGET")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.http_server", mode],
            cwd=scratch,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=(lambda: os.sched_setaffinity(0, {SERVER_CPU})) if pin else None,
        )
        try:
            assert process.stdout is not None and process.stdin is not None
            line = process.stdout.readline().decode().strip()
            if not line.startswith("http://"):
                raise SystemExit(f"The {mode} server did not start (exit code {process.wait()}).")
            yield Server(line, process, Path(scratch))
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def profiled(srv: Server, name: str | bool) -> Iterator[None]:
    """With a ``name`` (not ``False``), sample the server with py-spy meanwhile: collapsed stacks of
    what ran, into ``bench/results/<name>.txt`` (they open in speedscope or flamegraph.pl)."""
    if not name:
        yield
        return
    spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy).")
    output = RESULTS / f"{name}.txt"
    sampler = subprocess.Popen(
        [spy, "record", "--pid", str(srv.process.pid), "--rate", "250", "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the measured stretch begins
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        sampler.wait(timeout=30)
        print(f"Profile of the server: {output}", file=sys.stderr)


@dataclass
class Window:
    """Wall time and CPU of both processes over one measured stretch."""

    server: Server
    began: float = 0.0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0

    def start(self) -> Window:
        self.began, self.server_cpu = time.perf_counter(), self.server.cpu_seconds()
        self.client_cpu, self.machine_cpu = time.process_time(), _machine_cpu_seconds()
        return self

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.began
        self.server_cpu = self.server.cpu_seconds() - self.server_cpu
        self.client_cpu = time.process_time() - self.client_cpu
        self.machine_cpu = _machine_cpu_seconds() - self.machine_cpu

    __enter__ = start

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def summary(self) -> dict[str, float]:
        """CPU as a percentage of one core: the server's, this process's, and everything else on the
        machine meanwhile (other programs compete for the same two cores and skew the figures)."""
        others = max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu)
        return {
            "seconds": self.seconds,
            "server_cpu_pct": 100 * self.server_cpu / self.seconds,
            "client_cpu_pct": 100 * self.client_cpu / self.seconds,
            "other_cpu_pct": 100 * others / self.seconds,
        }


def _machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (``/proc/stat``: all but idle and iowait)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# -- POST /workflows/{name} ---------------------------------------------------------------------------


async def _post_load(clients: list[httpx.AsyncClient], total: int) -> tuple[list[float], Counter[int], str | None]:
    """``total`` POSTs of the no-op workflow, each client posting in a loop; latencies, status counts
    and the id of the last run admitted."""
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    last: list[httpx.Response] = []
    remaining = total

    async def caller(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            response = await client.post("/workflows/noop")
            samples.append(time.perf_counter() - began)
            statuses[response.status_code] += 1
            if response.status_code == 202:
                last[:] = [response]

    async with anyio.create_task_group() as tasks:
        for client in clients:
            tasks.start_soon(caller, client)
    return samples, statuses, last[0].json()["runId"] if last else None


@asynccontextmanager
async def _clients(url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` clients of one connection each, as many separate callers would be. (One client with a
    pool of ``count`` connections costs far more CPU here: httpcore scans its whole pool on every
    request, which made this process, not the server, the bottleneck.)"""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=60)
            )
            for _ in range(count)
        ]


async def _drained(client: httpx.AsyncClient, run_id: str) -> float:
    """Seconds until the last admitted run has completed (the server executes what it admits)."""
    began = time.perf_counter()
    while True:
        record = (await client.get(f"/runs/{run_id}", params={"meta": ""})).json()
        if record["status"] not in ("queued", "running"):
            return time.perf_counter() - began
        await anyio.sleep(0.005)


async def measure_post(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """``args.requests`` POSTs by ``args.clients`` clients after a warm-up, on a fresh server."""
    with server(mode, args.pin) as srv:
        async with _clients(srv.url, args.clients) as clients:
            await _post_load(clients, args.post_warmup)
            with profiled(srv, args.profile and f"profile-post-{mode}-{args.stamp}"), Window(srv) as window:
                samples, statuses, last = await _post_load(clients, args.requests)
            out: dict[str, Any] = {
                "requests": len(samples),
                "per_s": len(samples) / window.seconds,
                **latency(samples),
                "statuses": {str(code): n for code, n in sorted(statuses.items())},
                **window.summary(),
            }
            if mode != "bare" and last is not None:
                out["drain_s"] = await _drained(clients[0], last)
            return out


# -- emit → SSE followers -----------------------------------------------------------------------------


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


# -- report -------------------------------------------------------------------------------------------


Row = tuple[str, Callable[[dict[str, Any]], Any], str]  # label, what to show of a column, format

#: The CPU rows of every table: whether the server, the load generator or other programs were the limit.
CPU_ROWS: list[Row] = [
    ("server CPU (% of one core)", lambda r: r["server_cpu_pct"], "{:.0f} %"),
    ("load generator CPU (% of one core)", lambda r: r["client_cpu_pct"], "{:.0f} %"),
    ("other programs' CPU meanwhile", lambda r: r["other_cpu_pct"], "{:.0f} %"),
]
POST_ROWS: list[Row] = [
    ("requests per second", lambda r: r["per_s"], "{:,.0f}/s"),
    ("latency p50", lambda r: r["p50_ms"], "{:.2f} ms"),
    ("latency p99", lambda r: r["p99_ms"], "{:.2f} ms"),
    ("status codes", lambda r: ", ".join(f"{c} × {n:,}" for c, n in r["statuses"].items()), "{}"),
    ("server CPU per request", lambda r: 1e4 * r["server_cpu_pct"] / r["per_s"], "{:.0f} µs"),
    *CPU_ROWS,
    ("last run completed after the last answer", lambda r: r["drain_s"] * 1000, "{:.0f} ms"),
]
SSE_ROWS: list[Row] = [
    ("latency p50", lambda r: r["p50_ms"], "{:.2f} ms"),
    ("latency p99", lambda r: r["p99_ms"], "{:.2f} ms"),
    ("latency max", lambda r: r["max_ms"], "{:.2f} ms"),
    ("until the first follower had it, p50 / p99",
     lambda r: (r["first_follower_p50_ms"], r["first_follower_p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
    ("until every follower had it, p50 / p99",
     lambda r: (r["all_followers_p50_ms"], r["all_followers_p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
    ("ticks per follower (min / max)",
     lambda r: (r["ticks_received_min"], r["ticks_received_max"]), "{0[0]:,} / {0[1]:,}"),
    ("followers with every tick exactly once", lambda r: (r["followers_with_every_tick_once"], r["followers"]),
     "{0[0]} of {0[1]}"),
    ("followers that saw a duplicate", lambda r: r["followers_with_duplicate_events"], "{}"),
    ("emit rate achieved", lambda r: r["emit_rate_per_s"], "{:.1f}/s"),
    ("events per SSE data frame", lambda r: r["events_received"] / r["data_frames"], "{:.2f}"),
    ("server CPU per data frame", lambda r: r["server_cpu_per_frame_us"], "{:.0f} µs"),
    ("load generator CPU per data frame", lambda r: r["client_cpu_per_frame_us"], "{:.0f} µs"),
    *CPU_ROWS,
]


def _table(title: str, columns: dict[str, dict[str, Any]], rows: list[Row]) -> list[str]:
    """A Markdown table of ``rows`` with one column per mode (``—`` where a figure does not apply)."""
    header = "| measure | " + " | ".join(LABELS[m] for m in columns) + " |"
    lines = [title, "", header, "|---|" + "---:|" * len(columns)]
    for label, pick, unit in rows:
        cells = []
        for column in columns.values():
            try:
                cells.append(unit.format(pick(column)))
            except (KeyError, TypeError):
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def table(results: dict[str, Any]) -> str:
    """The Markdown tables of ``bench/README.md``."""
    settings, lines = results["settings"], []
    post = {mode: results["post"][mode] for mode in POST_MODES if mode in results["post"]}
    if post:
        title = f"`POST /workflows/noop`, {settings['clients']} concurrent clients, {settings['requests']:,} requests"
        lines += _table(title, post, POST_ROWS)
    for rate in settings["rates"]:
        sse = {mode: results["sse"][mode][f"{rate:g}"] for mode in SSE_MODES if mode in results["sse"]}
        if sse:
            events = next(iter(sse.values()))["events_each"]
            title = f"`ctx.emit` → SSE, {settings['followers']} followers of one run, {events:,} events at {rate:g}/s"
            lines += _table(title, sse, SSE_ROWS)
    return "\n".join(lines).rstrip()


def _check(results: dict[str, Any]) -> list[str]:
    """What the run must show: every POST answered 202, every follower got every tick once."""
    problems = []
    for mode, r in results["post"].items():
        if set(r["statuses"]) != {"202"}:
            problems.append(f"{mode}: POST status codes {r['statuses']}")
    for mode, by_rate in results["sse"].items():
        for rate, r in by_rate.items():
            if r["followers_with_every_tick_once"] != r["followers"] or r["followers_with_duplicate_events"]:
                problems.append(f"{mode} at {rate}/s: not every follower received every tick exactly once")
    return problems


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
    parser.add_argument("--requests", type=int, default=10_000, help="POSTs measured per column")
    parser.add_argument("--post-warmup", type=int, default=2_000, help="POSTs before measuring")
    parser.add_argument("--clients", type=int, default=32, help="concurrent POST clients")
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
    args.pin = args.pin and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CPU})

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": _versions(),
        "settings": {
            key: getattr(args, key)
            for key in ("requests", "post_warmup", "clients", "followers", "rates", "seconds", "sse_warmup", "pin")
        },
        "post": {},
        "sse": {},
    }
    if args.only != "sse":
        for mode in (m for m in POST_MODES if m in modes):
            results["post"][mode] = anyio.run(measure_post, mode, args)
    if args.only != "post":
        for mode in (m for m in SSE_MODES if m in modes):
            results["sse"][mode] = anyio.run(measure_sse, mode, args)

    path = RESULTS / f"http-{args.stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nResults: {path}")
    if problems := _check(results):
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    main()

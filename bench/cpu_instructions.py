"""Instructions per run, counted by valgrind's callgrind: CPU cost that a busy machine cannot blur.

``python -m bench.cpu_instructions`` (``bench/run instructions``) runs each scenario in a child
process under ``valgrind --tool=callgrind`` with instrumentation off, turns it on (``callgrind_control``)
for the measured stretch only, and divides the instructions executed in it (every thread of the
process, user space: what the kernel does for a system call is not counted) by the runs:

* ``inprocess``: as ``bench/run cpu``: one caller awaits ``workflows.start(noop, ...)``, the runs
  executing in the same process, then every run ends;
* ``asgi``: ``POST /workflows/noop`` through ``create_app``'s ASGI app called directly (no server, no
  socket: the app, the admission and the execution);
* ``otel-none``, ``otel-sampled``, ``otel-unsampled``: ``inprocess`` with a one-step workflow, without
  the telemetry plugin, with every trace sampled, and with none (``ParentBased(ALWAYS_OFF)``), spans
  batched to an exporter that drops them.

Figures vary by well under 1 % from run to run. ``--baseline DIR`` counts another tree too (an export
of another commit). Needs ``valgrind`` (``apt-get install valgrind``); Redis scenarios need
``redis-server``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).parent.parent
SCENARIOS = ("inprocess", "asgi", "otel-none", "otel-sampled", "otel-unsampled")
WARMUP = 300


# -- the child: runs between two lines on stdin -----------------------------------------------------


def _plugins(setup: str) -> list[object]:
    if setup == "none":
        return []
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    from flue_core.otel import FlueTelemetry

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracing = TracerProvider(sampler=ParentBased(ALWAYS_OFF)) if setup == "unsampled" else TracerProvider()
    tracing.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=100_000))
    return [FlueTelemetry(tracer_provider=tracing, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))]


async def _child(store: str, url: str, scenario: str, count: int) -> None:
    from bench.cpu_scenario import admit_sequentially, drained, runtime_for
    from flue_core import RunContext, Runtime, workflow

    runtime = runtime_for(store, url)
    if scenario.startswith("otel-"):

        @workflow(name="one-step")
        async def one_step(ctx: RunContext) -> int:
            return await ctx.step("one", lambda: 1)

        runtime = Runtime([one_step], target=runtime.target, entry_points=False, plugins=_plugins(scenario[5:]))

        async def go(n: int) -> None:
            from flue_core import workflows

            for _ in range(n):
                await workflows.start(one_step)

    elif scenario == "asgi":
        from flue_core.http import create_app

        app = create_app(runtime, authorize_run_read=lambda request, run: True)
        body = b'{"caller": "wrk", "n": 1}'
        headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

        async def go(n: int) -> None:
            for _ in range(n):
                messages = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive() -> dict[str, Any]:
                    return messages.pop() if messages else {"type": "http.disconnect"}

                async def send(message: dict[str, Any]) -> None:
                    pass

                scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                         "scheme": "http", "path": "/workflows/noop", "raw_path": b"/workflows/noop", "query_string": b"",
                         "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
                         "state": {}}  # fmt: skip
                await app(scope, receive, send)

    else:
        go = admit_sequentially  # the benchmark's no-op workflow, as bench/run cpu
    async with runtime:
        await go(WARMUP)
        await drained(runtime)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        await go(count)
        await drained(runtime)
        print("done", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)


# -- the parent: valgrind, the toggles, the count ----------------------------------------------------


def count(tree: Path, store: str, url: str, scenario: str, runs: int) -> float:
    """Instructions per run of ``scenario`` on ``store``, with Flue imported from ``tree``."""
    with tempfile.TemporaryDirectory(prefix="flue-cg-") as scratch:
        output = Path(scratch) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        env.pop("FLUE_STORE", None)
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={output}", sys.executable,
             "-m", "bench.cpu_instructions", "--child", store, url, scenario, str(runs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=scratch,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            _expect(child, "ready")
            _control(child.pid, "on")
            child.stdin.write("go\n")
            child.stdin.flush()
            _expect(child, "done")
            _control(child.pid, "off")
            child.stdin.write("end\n")
            child.stdin.flush()
            child.wait(timeout=600)
        finally:
            if child.poll() is None:
                child.kill()
        found = re.search(r"^totals: (\d+)", output.read_text(), re.M)
        if found is None:
            raise SystemExit(f"callgrind wrote no totals for {store} {scenario}")
        return int(found.group(1)) / runs


def _expect(child: subprocess.Popen[str], line: str) -> None:
    assert child.stdout is not None
    got = child.stdout.readline().strip()
    if got != line:
        raise SystemExit(f"the measured process said {got!r}, not {line!r} (exit code {child.poll()})")


def _control(pid: int, state: str) -> None:
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    if "--child" in sys.argv:
        store, url, scenario, runs = sys.argv[2:6]
        anyio.run(_child, store, url, scenario, int(runs))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="measured runs per scenario (default 1000)")
    parser.add_argument("--stores", default="memory,sqlite,redis", help="default memory,sqlite,redis")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"default {','.join(SCENARIOS)}")
    parser.add_argument("--baseline", type=Path, help="also count this tree (an export of another commit)")
    args = parser.parse_args()
    trees = [("after", ROOT)] + ([("before", args.baseline)] if args.baseline else [])
    if args.baseline:
        from bench.cpu import prepare_baseline

        prepare_baseline(args.baseline)
        (args.baseline / "bench" / "cpu_instructions.py").write_text(Path(__file__).read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="flue-cg-redis-") as scratch:
        redis = None
        stores = [s for s in args.stores.split(",") if s]
        if "redis" in stores:
            from flue_node_like.redis_server import RedisServer

            redis = RedisServer(Path(scratch)).start()
        try:
            for scenario in [s for s in args.scenarios.split(",") if s]:
                for store in stores if not scenario.startswith("otel-") else ["memory"]:
                    figures = {}
                    for label, tree in trees:
                        url = redis.url(prefix=f"cg{label}{scenario}") if store == "redis" and redis else "-"
                        figures[label] = count(tree, store, url, scenario, args.runs)
                        print(f"{scenario} {store} {label}: {figures[label]:,.0f} instructions per run", file=sys.stderr)
                    rows.append((scenario, store, figures))
        finally:
            if redis is not None:
                redis.stop()
    heads = [label for label, _ in trees]
    print("| scenario | store | " + " | ".join(f"instructions per run, {h}" for h in heads) + (" | after / before |" if len(heads) > 1 else " |"))
    print("|---|---|" + "---:|" * (len(heads) + (1 if len(heads) > 1 else 0)))
    for scenario, store, figures in rows:
        cells = [f"{figures[h] / 1000:,.0f}k" for h in heads]
        if len(heads) > 1:
            cells.append(f"{figures['after'] / figures['before']:.2f}×")
        print(f"| {scenario} | {store} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""What OpenTelemetry costs a run: ``FlueTelemetry`` on the real SDK against no plugin.

``python -m bench.otel`` (or ``bench/run otel``) measures, on the memory store and on SQLite (its
default ``synchronous=FULL``), in one process, the median of ``--repeats`` rounds of:

* sequential admission: ``await workflows.start(one_step)`` ``--runs`` times (ms per run);
* admit and execute: the same admissions, then until every run ended (ms per run, each run being an
  admission, one execution and one step: three spans, an admission count and a duration);

without the plugin, with every trace sampled (spans batched to an exporter that drops them, so the
SDK's own cost is measured and no network), and with nothing sampled (``ParentBased(ALWAYS_OFF)``:
the metrics, and the trace context still carried with each run). Prints a Markdown table and writes
``bench/results/otel-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.otel import FlueTelemetry
from flue_node_like import LocalTarget, MemoryStore, SqliteStore

RESULTS = Path(__file__).parent / "results"
SETUPS = ("no plugin", "all sampled", "none sampled")


@workflow(name="bench-otel-one-step")
async def one_step(ctx: RunContext) -> int:
    return await ctx.step("one", lambda: 1)


class Dropped(SpanExporter):
    """Takes the batches and keeps nothing: the SDK's work without a collector's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def plugins(setup: str) -> list[object]:
    if setup == "no plugin":
        return []
    tracing = TracerProvider(sampler=ParentBased(ALWAYS_OFF)) if setup == "none sampled" else TracerProvider()
    tracing.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=100_000))
    return [FlueTelemetry(tracer_provider=tracing, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))]


async def round_of(store: str, setup: str, count: int) -> tuple[float, float]:
    backend = MemoryStore() if store == "memory" else SqliteStore(Path(tempfile.mkdtemp()) / "flue.db")
    async with Runtime([one_step], target=LocalTarget(backend), plugins=plugins(setup), entry_points=False):
        for _ in range(200):  # warm-up
            await runs.wait((await workflows.start(one_step)).run_id)
        began = time.perf_counter()
        ids = [(await workflows.start(one_step)).run_id for _ in range(count)]
        admitted = time.perf_counter() - began
        for run_id in ids:
            await runs.wait(run_id)
        ended = time.perf_counter() - began
    return admitted / count * 1000, ended / count * 1000


async def main(count: int, repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for store in ("memory", "sqlite"):
        for setup in SETUPS:
            rounds = [await round_of(store, setup, count) for _ in range(repeats)]
            figures[f"{store}/{setup}"] = {
                "admit_ms": statistics.median(r[0] for r in rounds),
                "admit_execute_ms": statistics.median(r[1] for r in rounds),
            }
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = ["| store | setup | admission, ms/run | admit + execute, ms/run |", "|---|---|---:|---:|"]
    for name, value in figures.items():
        store, setup = name.split("/")
        lines.append(f"| {store} | {setup} | {value['admit_ms']:.3f} | {value['admit_execute_ms']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs per round (default 3000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per figure; the median is shown (default 3)")
    args = parser.parse_args()
    results = anyio.run(main, args.runs, args.repeats)
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"otel-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"python": platform.python_version(), "runs": args.runs, "figures": results}, indent=2))
    print(f"\nwritten to {out}")

"""The benchmark of issue 2: Flue's local target on SQLite beside DBOS on SQLite, in one run.

``python -m bench.admission`` (or ``bench/run``, which installs what it needs first) measures:

* admission: p50/p99 and rate of sequential ``workflows.start()`` of a no-op workflow, and the rate
  with 32 concurrent callers, while the runs execute in the same process;
* end-to-end: p50/p99 of ``start()`` → ``runs.result()`` of a no-op run;
* events: seconds from a workflow's first emit until a follower (``runs.events(follow=True)``) has
  received the 1,000th event, emitted in one burst and paced (the workflow yields after each);
* the admission curve: p50/p99 of a batch of sequential admissions once 1k, 10k, 50k and 100k runs
  are stored;
* DBOS 3.4 the same way, in a child process (its SQLite system database, ``DBOS.start_workflow``,
  ``DBOS.write_stream``/``read_stream``).

Flue is measured with ``PRAGMA synchronous=FULL`` (the default: durable on commit), and again with
``NORMAL`` as an extra column. Results go to ``bench/results/<time>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench import flue_sqlite
from bench.child import measure_in_child

RESULTS = Path(__file__).parent / "results"
CURVE = (1_000, 10_000, 50_000, 100_000)


def _dbos(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    counts = (args.dbos_sequential, args.dbos_concurrent, args.dbos_end_to_end, args.event_trials)
    return measure_in_child("bench.dbos_sqlite", directory, *counts)


async def _flue(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for synchronous in ("FULL", "NORMAL"):
        out[synchronous] = await flue_sqlite.measure(
            directory / f"flue-{synchronous.lower()}.db",
            synchronous=synchronous,
            sequential=args.sequential,
            concurrent=args.concurrent,
            end_to_end=args.end_to_end,
            event_trials=args.event_trials,
        )
    if args.curve:
        out["curve"] = await flue_sqlite.measure_curve(directory / "flue-curve.db", CURVE, args.curve_batch)
    return out


def table(results: dict[str, Any]) -> str:
    """The Markdown table of ``bench/README.md``."""
    full, normal, dbos = results["flue"]["FULL"], results["flue"]["NORMAL"], results["dbos"]

    def row(label: str, pick: Any, unit: str) -> str:
        cells = []
        for source in (full, normal, dbos):
            try:
                cells.append(unit.format(pick(source)))
            except (KeyError, TypeError):
                cells.append("—")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        "| measure | Flue, SQLite FULL (default) | Flue, SQLite NORMAL | DBOS 3.4, SQLite |",
        "|---|---:|---:|---:|",
        row("sequential admission p50", lambda r: r["sequential"]["p50_ms"], "{:.3f} ms"),
        row("sequential admission p99", lambda r: r["sequential"]["p99_ms"], "{:.3f} ms"),
        row("sequential admission rate", lambda r: r["sequential"]["per_s"], "{:,.0f}/s"),
        row("32 concurrent callers: rate", lambda r: r["concurrent"]["per_s"], "{:,.0f}/s"),
        row("32 concurrent callers: p50 / p99", lambda r: (r["concurrent"]["p50_ms"], r["concurrent"]["p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
        row("end-to-end no-op run p50", lambda r: r["end_to_end"]["p50_ms"], "{:.2f} ms"),
        row("end-to-end no-op run p99", lambda r: r["end_to_end"]["p99_ms"], "{:.2f} ms"),
        row("1,000 events to a follower, burst (median)", lambda r: r["events_burst"]["median_s"], "{:.3f} s"),
        row("1,000 events to a follower, paced (median)", lambda r: r["events_paced"]["median_s"], "{:.3f} s"),
        row("1,000 stream values to a reader (median)", lambda r: r["events"]["median_s"], "{:.3f} s"),
    ]
    curve = results["flue"].get("curve")
    if curve:
        lines += [
            "",
            "| runs stored | sequential admission p50 | p99 | rate |",
            "|---:|---:|---:|---:|",
            *(
                f"| {p['stored_runs']:,} | {p['p50_ms']:.3f} ms | {p['p99_ms']:.3f} ms | {p['per_s']:,.0f}/s |"
                for p in curve
            ),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=5000, help="sequential admissions measured")
    parser.add_argument("--concurrent", type=int, default=20000, help="admissions by the 32 concurrent callers")
    parser.add_argument("--end-to-end", type=int, default=1000, help="start → result round trips measured")
    parser.add_argument("--event-trials", type=int, default=5, help="runs of 1,000 events (each way)")
    parser.add_argument("--curve-batch", type=int, default=2000, help="admissions measured at each curve point")
    parser.add_argument("--no-curve", dest="curve", action="store_false", help="skip the 1k → 100k curve")
    parser.add_argument("--dbos-sequential", type=int, default=1000)
    parser.add_argument("--dbos-concurrent", type=int, default=2000)
    parser.add_argument("--dbos-end-to-end", type=int, default=300)
    parser.add_argument("--no-dbos", dest="dbos", action="store_false", help="measure Flue only")
    args = parser.parse_args(argv)

    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        directory = Path(scratch)
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "flue": anyio.run(_flue, directory, args),
            "dbos": _dbos(directory, args) if args.dbos else {},
        }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nResults: {RESULTS / f'{stamp}.json'}")


if __name__ == "__main__":
    main()

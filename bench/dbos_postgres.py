"""DBOS 3.4 on Postgres (its home ground), measured the way :mod:`bench.postgres_runs` measures Flue.

Run in its own process (``python -m bench.dbos_postgres URL SEQUENTIAL CONCURRENT END_TO_END TRIALS``):
DBOS keeps global state and threads. ``URL`` names a database of its own (DBOS creates its ``dbos``
schema there). Prints one JSON object.

* sequential and 32 concurrent ``DBOS.start_workflow(noop, n)`` (threads, as DBOS's API is
  synchronous); the workflows execute in this process meanwhile, on DBOS's thread pool;
* end-to-end: ``DBOS.start_workflow(noop, n).get_result()``, one at a time. DBOS executes a workflow
  in the process that starts it: that is its fastest path (queues with worker processes are polled,
  by default every second), so this favours DBOS against Flue's two worker processes;
* 1,000 values written by a workflow with ``DBOS.write_stream`` and read with ``DBOS.read_stream``
  (LISTEN/NOTIFY on Postgres), median of ``TRIALS``: from the first write to the reader holding the
  1,000th, in this process (``--reader-process`` of :mod:`bench.postgres_runs` reads from another);
* stored runs: 2,000 sequential starts measured once 1k, 10k, 50k and 100k workflows are stored
  (``CURVE`` as a sixth argument, the largest size, 0 to skip).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS

from bench.stats import latency

CONCURRENT_CALLERS = 32
EVENTS = 1000
CURVE = (1_000, 10_000, 50_000, 100_000)


@DBOS.workflow()
def noop(n: int) -> int:
    return n


_gates: dict[int, threading.Event] = {}
_first_write: dict[int, float] = {}


@DBOS.workflow()
def write_1000(trial: int) -> None:
    _gates[trial].wait()
    _first_write[trial] = time.time()
    for i in range(EVENTS):
        DBOS.write_stream("ticks", {"i": i})
    DBOS.close_stream("ticks")


def _sequential(count: int) -> tuple[list[float], float, list[Any]]:
    samples, handles = [], []
    began = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        handles.append(DBOS.start_workflow(noop, n))
        samples.append(time.perf_counter() - t0)
    return samples, time.perf_counter() - began, handles


def _concurrent(count: int) -> tuple[list[float], float, list[Any]]:
    samples: list[float] = []
    handles: list[Any] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(n):
            t0 = time.perf_counter()
            handle = DBOS.start_workflow(noop, i)
            elapsed = time.perf_counter() - t0
            with lock:
                samples.append(elapsed)
                handles.append(handle)

    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_CALLERS) as pool:
        shares = [count // CONCURRENT_CALLERS + (1 if i < count % CONCURRENT_CALLERS else 0) for i in range(CONCURRENT_CALLERS)]
        list(pool.map(caller, shares))
    return samples, time.perf_counter() - began, handles


def _drain(handles: list[Any]) -> None:
    for handle in handles:
        handle.get_result()


def _events_to_reader(trial: int) -> float:
    _gates[trial] = threading.Event()
    handle = DBOS.start_workflow(write_1000, trial)
    received = 0
    _gates[trial].set()
    done = 0.0
    for _ in DBOS.read_stream(handle.workflow_id, "ticks"):
        received += 1
        if received == EVENTS:
            done = time.time()
    assert received == EVENTS, received
    handle.get_result()
    return done - _first_write.pop(trial)


def _curve(largest: int) -> list[dict[str, Any]]:
    points, stored = [], 0
    for size in CURVE:
        if size > largest:
            break
        while stored < size:
            _, _, handles = _concurrent(min(10_000, size - stored))
            _drain(handles)
            stored += len(handles)
        samples, elapsed, handles = _sequential(2000)
        _drain(handles)
        points.append({"stored": size, "rate": len(samples) / elapsed, **latency(samples)})
        stored += len(handles)
        print(f"  dbos {size:>7,} stored: {points[-1]}", file=sys.stderr)
    return points


def measure(url: str, sequential: int, concurrent: int, end_to_end: int, trials: int, curve: int) -> dict[str, Any]:
    DBOS(config={"name": "flue-bench", "system_database_url": url})
    DBOS.launch()
    try:
        out: dict[str, Any] = {}
        _drain(_sequential(200)[2])  # warm-up

        samples, elapsed, handles = _sequential(sequential)
        out["sequential"] = {"admissions": len(samples), "rate": len(samples) / elapsed, **latency(samples)}
        _drain(handles)
        print(f"dbos sequential: {out['sequential']}", file=sys.stderr)

        samples, elapsed, handles = _concurrent(concurrent)
        out["concurrent"] = {"admissions": len(samples), "callers": CONCURRENT_CALLERS, "rate": len(samples) / elapsed, **latency(samples)}
        _drain(handles)
        print(f"dbos concurrent: {out['concurrent']}", file=sys.stderr)

        samples = []
        for n in range(end_to_end + 20):
            t0 = time.perf_counter()
            DBOS.start_workflow(noop, n).get_result()
            if n >= 20:
                samples.append(time.perf_counter() - t0)
        out["end_to_end"] = {"runs": end_to_end, **latency(samples)}
        print(f"dbos end-to-end: {out['end_to_end']}", file=sys.stderr)

        times = sorted(_events_to_reader(trial) for trial in range(trials))
        out["events"] = {"median_s": times[len(times) // 2], "all_s": times}
        print(f"dbos events: {out['events']}", file=sys.stderr)

        if curve:
            out["curve"] = _curve(curve)
        return out
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    url, *counts = sys.argv[1:]
    seq, conc, e2e, trials, curve = (int(c) for c in counts) if counts else (1000, 2000, 300, 5, 0)
    print(json.dumps(measure(url, seq, conc, e2e, trials, curve)))

"""DBOS 3.4 on its SQLite system database, measured the way :mod:`bench.flue_sqlite` measures Flue.

Run in its own process (``python -m bench.dbos_sqlite DIR``): DBOS keeps global state and threads.
Prints one JSON object. ``DBOS.start_workflow`` is synchronous; workflows run on its thread pool.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dbos import DBOS

from bench.stats import latency

CONCURRENT_CALLERS = 32
EVENTS = 1000


@DBOS.workflow()
def noop() -> None:
    return None


_gates: dict[int, threading.Event] = {}
_first_write: dict[int, float] = {}


@DBOS.workflow()
def write_1000(trial: int) -> None:
    _gates[trial].wait()
    _first_write[trial] = time.perf_counter()
    for i in range(EVENTS):
        DBOS.write_stream("ticks", {"i": i})
    DBOS.close_stream("ticks")


def _sequential(count: int) -> tuple[list[float], float, list[Any]]:
    samples, handles = [], []
    began = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        handles.append(DBOS.start_workflow(noop))
        samples.append(time.perf_counter() - t0)
    return samples, time.perf_counter() - began, handles


def _concurrent(count: int) -> tuple[list[float], float, list[Any]]:
    samples: list[float] = []
    handles: list[Any] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            handle = DBOS.start_workflow(noop)
            elapsed = time.perf_counter() - t0
            with lock:
                samples.append(elapsed)
                handles.append(handle)

    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_CALLERS) as pool:
        shares = [count // CONCURRENT_CALLERS + (1 if i < count % CONCURRENT_CALLERS else 0) for i in range(CONCURRENT_CALLERS)]
        list(pool.map(caller, shares))
    return samples, time.perf_counter() - began, handles


def _drain(handles: list[Any]) -> float:
    began = time.perf_counter()
    for handle in handles[-64:]:
        handle.get_result()
    return time.perf_counter() - began


def _events_to_reader(trial: int) -> float:
    _gates[trial] = threading.Event()
    handle = DBOS.start_workflow(write_1000, trial)
    received = 0
    _gates[trial].set()
    for _ in DBOS.read_stream(handle.workflow_id, "ticks"):
        received += 1
        if received == EVENTS:
            done = time.perf_counter()
    assert received == EVENTS, received
    handle.get_result()
    return done - _first_write.pop(trial)


def measure(directory: Path, *, sequential: int, concurrent: int, end_to_end: int, event_trials: int) -> dict[str, Any]:
    DBOS(config={"name": "flue-bench", "system_database_url": f"sqlite:///{directory / 'dbos.sqlite'}"})
    DBOS.launch()
    try:
        out: dict[str, Any] = {}
        _drain(_sequential(200)[2])  # warm-up

        samples, elapsed, handles = _sequential(sequential)
        out["sequential"] = {**latency(samples), "per_s": len(samples) / elapsed, "count": len(samples)}
        out["sequential"]["drain_s"] = _drain(handles)

        samples, elapsed, handles = _concurrent(concurrent)
        out["concurrent"] = {**latency(samples), "per_s": len(samples) / elapsed, "count": len(samples)}
        out["concurrent"]["drain_s"] = _drain(handles)

        samples = []
        for _ in range(end_to_end):
            t0 = time.perf_counter()
            DBOS.start_workflow(noop).get_result()
            samples.append(time.perf_counter() - t0)
        out["end_to_end"] = latency(samples)

        times = sorted(_events_to_reader(trial) for trial in range(event_trials))
        out["events"] = {"median_s": times[len(times) // 2], "max_s": times[-1], "trials": event_trials}
        return out
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    directory, *counts = sys.argv[1:]
    seq, conc, e2e, trials = (int(c) for c in counts) if counts else (1000, 2000, 200, 3)
    result = measure(Path(directory), sequential=seq, concurrent=conc, end_to_end=e2e, event_trials=trials)
    print(json.dumps(result))

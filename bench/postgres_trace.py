"""Where an end-to-end run's time goes on the Postgres store, with two worker processes.

``python -m bench.postgres_trace [COUNT]`` starts its own Postgres and two ``flue worker`` processes,
then, one run at a time from an admit-only process, times ``start()`` → ``runs.result()`` and splits
it with the run's own record (times by the processes' clocks, to the millisecond):

* **admission**: ``start()`` until it returned (one commit);
* **to the claim**: from the record's ``created_at`` to its ``started_at`` — the change reaching a
  worker (NOTIFY), the worker taking the run from the pool and claiming it (two round trips, one
  commit);
* **execution**: ``started_at`` to ``ended_at`` — the no-op workflow and its ``run_start`` event;
* **the end, heard**: ``ended_at`` until ``runs.result()`` returned — the end's commit (with the
  events), the NOTIFY to the admitting process and its read of the record.

Medians in ms; each store operation's own latency, measured alone in the benchmark process, follows.
"""

from __future__ import annotations

import statistics
import sys
import time

import anyio

from bench.redis_runs import noop, web, workers
from flue_core import runs, workflows
from flue_core.models import RunStatus, utc_now
from flue_core.store import Limits, NewEvent, NewRun, Outcome, WorkerInfo
from flue_postgres import PostgresStore
from flue_postgres.server import PostgresServer


async def phases(url: str, count: int) -> dict[str, float]:
    parts: dict[str, list[float]] = {"admission": [], "to the claim": [], "execution": [], "the end, heard": [], "total": []}
    with workers(url):
        async with web(url) as rt:
            for n in range(count + 50):
                t0 = time.time()
                receipt = await workflows.start(noop, input={"n": n}, runtime=rt)
                t1 = time.time()
                record = await runs.wait(receipt.run_id, runtime=rt)
                t2 = time.time()
                if n < 50:
                    continue
                created, started, ended = (x.timestamp() for x in (record.created_at, record.started_at, record.ended_at))
                parts["admission"].append(t1 - t0)
                parts["to the claim"].append(started - created)
                parts["execution"].append(ended - started)
                parts["the end, heard"].append(t2 - ended)
                parts["total"].append(t2 - t0)
    return {name: statistics.median(values) * 1000 for name, values in parts.items()}


async def operations(url: str, count: int) -> dict[str, float]:
    store = PostgresStore(url)
    await store.open(lambda keys: None)
    times: dict[str, list[float]] = {"admit": [], "take": [], "claim": [], "append + finish": [], "get": []}
    try:
        await store.heartbeat(WorkerInfo("wkr_trace", "host", 1, None, time.time()))
        for n in range(count):
            now = utc_now()
            run_id = f"run_trace_{n}"
            first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": None}, now)
            t0 = time.perf_counter()
            await store.admit(NewRun(run_id, "w", None, None, now, None, first))
            t1 = time.perf_counter()
            await store.take_ready("wkr_trace", {"w": Limits()}, 8)
            t2 = time.perf_counter()
            attempt = await store.claim(run_id, "wkr_trace")
            t3 = time.perf_counter()
            assert attempt is not None
            store.append(run_id, [NewEvent(attempt.next_index, "run_start", {}, utc_now())])
            await store.finish(run_id, Outcome(RunStatus.COMPLETED, utc_now()), held_by="wkr_trace")
            t4 = time.perf_counter()
            await store.get(run_id)
            t5 = time.perf_counter()
            for name, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                times[name].append(value)
    finally:
        await store.close()
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    server = PostgresServer().start()
    try:
        server.create_database("trace")
        split = anyio.run(phases, server.url("trace", schema="e2e"), count)
        ops = anyio.run(operations, server.url("trace", schema="ops"), count)
    finally:
        server.remove()
    print("| part of an end-to-end run (2 workers) | p50 |\n|---|---:|")
    for name, value in split.items():
        print(f"| {name} | {value:.2f} ms |")
    print("\n| store operation, alone | p50 |\n|---|---:|")
    for name, value in ops.items():
        print(f"| {name} | {value:.3f} ms |")


if __name__ == "__main__":
    main()

"""asyncpg or psycopg 3 for the Postgres store? Both measured on the store's own workload.

``python -m bench.postgres_drivers [URL]`` (default: the server at 127.0.0.1:5432, trust auth) makes a
scratch database and, with each driver's asyncio API, measures what the store does most:

* **call**: one admission as the store makes it — a call of a PL/pgSQL function that inserts a record
  and an event and notifies a channel, in its own transaction (autocommit, ``synchronous_commit``
  on): sequential p50 and rate, and the driver's own CPU per call in this process;
* **batch**: the same 32 admissions as one call with a JSON array (how the store's writer batches
  concurrent callers): calls per second;
* **32 connections**: 32 tasks each on its own connection making single calls (no batching): rate;
* **read**: a primary-key ``SELECT`` of a record row, sequential p50;
* **notify**: from a committed ``pg_notify`` on one connection to the ``LISTEN`` callback on another:
  p50.

Prints a table and one JSON object. ``bench/README.md`` has the figures and the choice they led to.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg

SCHEMA = """
CREATE TABLE runs (run_id text COLLATE "C" PRIMARY KEY, workflow text NOT NULL, status text NOT NULL,
                   input text, created_at timestamptz NOT NULL, next_index int NOT NULL);
CREATE INDEX runs_order ON runs (created_at, run_id);
CREATE TABLE events (run_id text COLLATE "C", idx int, data text NOT NULL, PRIMARY KEY (run_id, idx));
CREATE FUNCTION admit(p_id text, p_wf text, p_input text, p_event text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO runs VALUES (p_id, p_wf, 'queued', p_input, clock_timestamp(), 1);
  INSERT INTO events VALUES (p_id, 0, p_event);
  PERFORM pg_notify('bench', p_id);
  RETURN p_id;
END $$;
CREATE FUNCTION admit_many(p_ops text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE op jsonb; n int := 0;
BEGIN
  FOR op IN SELECT jsonb_array_elements(p_ops::jsonb) LOOP
    INSERT INTO runs VALUES (op->>0, op->>1, 'queued', op->>2, clock_timestamp(), 1);
    INSERT INTO events VALUES (op->>0, 0, op->>3);
    n := n + 1;
  END LOOP;
  PERFORM pg_notify('bench', n::text);
  RETURN n;
END $$;
"""

INPUT = json.dumps({"n": 1, "prompt": "What happened today?"})
EVENT = json.dumps({"runId": "x", "index": 0, "timestamp": "2026-01-01T00:00:00.000Z", "type": "run_queued",
                    "data": {"workflow": "bench", "input": {"n": 1}, "key": None}})  # fmt: skip


def _ids() -> Callable[[], str]:
    prefix = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    return lambda: f"run_{prefix}{next(counter):012d}"


async def _timed(call: Callable[[], Awaitable[Any]], count: int) -> dict[str, float]:
    samples = []
    cpu, began = time.process_time(), time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    samples.sort()
    return {"p50_ms": samples[len(samples) // 2] * 1000, "rate": count / elapsed, "cpu_us": cpu / count * 1e6}


async def _concurrently(calls: list[Callable[[], Awaitable[Any]]], each: int) -> float:
    async def loop(call: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(each):
            await call()

    began = time.perf_counter()
    await asyncio.gather(*(loop(call) for call in calls))
    return len(calls) * each / (time.perf_counter() - began)


async def _notify_latency(send: Callable[[], Awaitable[Any]], heard: asyncio.Queue[float], count: int) -> float:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        await send()
        samples.append(await heard.get() - t0)
    return statistics.median(samples) * 1000


async def measure_asyncpg(url: str, count: int) -> dict[str, Any]:
    new_id = _ids()
    conn = await asyncpg.connect(url)
    out: dict[str, Any] = {}
    out["call"] = await _timed(lambda: conn.fetchval("SELECT admit($1, $2, $3, $4)", new_id(), "bench", INPUT, EVENT), count)
    batch = lambda: json.dumps([[new_id(), "bench", INPUT, EVENT] for _ in range(32)])  # noqa: E731
    out["batch"] = await _timed(lambda: conn.fetchval("SELECT admit_many($1)", batch()), count // 32)
    out["batch"]["admissions_per_s"] = out["batch"]["rate"] * 32
    known = new_id()
    await conn.fetchval("SELECT admit($1, $2, $3, $4)", known, "bench", INPUT, EVENT)
    out["read"] = await _timed(lambda: conn.fetchrow("SELECT * FROM runs WHERE run_id = $1", known), count)
    others = [await asyncpg.connect(url) for _ in range(32)]
    out["connections_32"] = {
        "rate": await _concurrently(
            [lambda c=c: c.fetchval("SELECT admit($1, $2, $3, $4)", new_id(), "bench", INPUT, EVENT) for c in others], count // 32
        )
    }
    listener = await asyncpg.connect(url)
    heard: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("bench", lambda *_: heard.put_nowait(time.perf_counter()))
    out["notify_ms"] = await _notify_latency(lambda: conn.execute("SELECT pg_notify('bench', 'x')"), heard, 200)
    for c in (conn, listener, *others):
        await c.close()
    return out


async def measure_psycopg(url: str, count: int) -> dict[str, Any]:
    new_id = _ids()
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
    out: dict[str, Any] = {}

    async def call(c: psycopg.AsyncConnection[Any] = conn) -> None:
        await (await c.execute("SELECT admit(%s, %s, %s, %s)", (new_id(), "bench", INPUT, EVENT))).fetchone()

    out["call"] = await _timed(call, count)

    async def batch() -> None:
        ops = json.dumps([[new_id(), "bench", INPUT, EVENT] for _ in range(32)])
        await (await conn.execute("SELECT admit_many(%s)", (ops,))).fetchone()

    out["batch"] = await _timed(batch, count // 32)
    out["batch"]["admissions_per_s"] = out["batch"]["rate"] * 32

    async def pipelined() -> None:  # psycopg's own batching: 32 calls in one pipeline, one transaction
        async with conn.transaction(), conn.pipeline():
            for _ in range(32):
                await conn.execute("SELECT admit(%s, %s, %s, %s)", (new_id(), "bench", INPUT, EVENT))

    out["pipeline"] = await _timed(pipelined, count // 32)
    out["pipeline"]["admissions_per_s"] = out["pipeline"]["rate"] * 32
    known = new_id()
    await call()
    await conn.execute("SELECT admit(%s, %s, %s, %s)", (known, "bench", INPUT, EVENT))

    async def read() -> None:
        await (await conn.execute("SELECT * FROM runs WHERE run_id = %s", (known,))).fetchone()

    out["read"] = await _timed(read, count)
    others = [await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0) for _ in range(32)]
    out["connections_32"] = {"rate": await _concurrently([lambda c=c: call(c) for c in others], count // 32)}
    listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await listener.execute("LISTEN bench")
    heard: asyncio.Queue[float] = asyncio.Queue()

    async def listen() -> None:
        async for _ in listener.notifies():
            heard.put_nowait(time.perf_counter())

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.1)
    out["notify_ms"] = await _notify_latency(lambda: conn.execute("SELECT pg_notify('bench', 'x')"), heard, 200)
    task.cancel()
    for c in (conn, listener, *others):
        await c.close()
    return out


async def main(server: str, count: int) -> dict[str, Any]:
    name = f"flue_drivers_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        setup = await asyncpg.connect(url)
        await setup.execute(SCHEMA)
        await setup.close()
        results = {}
        for _ in range(2):  # twice, alternating, so neither driver gets the quieter moment
            for driver, measure in (("asyncpg", measure_asyncpg), ("psycopg", measure_psycopg)):
                results.setdefault(driver, []).append(await measure(url, count))
        return results
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def table(results: dict[str, Any]) -> str:
    def cell(driver: str, pick: Callable[[dict[str, Any]], float], fmt: str) -> str:
        return " / ".join(fmt.format(pick(run)) for run in results[driver])

    rows = [
        ("admission call p50 (ms)", lambda r: r["call"]["p50_ms"], "{:.3f}"),
        ("admission calls/s, sequential", lambda r: r["call"]["rate"], "{:,.0f}"),
        ("driver CPU per call (µs, this process)", lambda r: r["call"]["cpu_us"], "{:.0f}"),
        ("32 admissions per call: admissions/s", lambda r: r["batch"]["admissions_per_s"], "{:,.0f}"),
        ("32 connections, single calls: admissions/s", lambda r: r["connections_32"]["rate"], "{:,.0f}"),
        ("primary-key read p50 (ms)", lambda r: r["read"]["p50_ms"], "{:.3f}"),
        ("NOTIFY → LISTEN callback p50 (ms)", lambda r: r["notify_ms"], "{:.3f}"),
    ]
    lines = ["| measure (two rounds) | asyncpg | psycopg 3 |", "|---|---:|---:|"]
    lines += [f"| {label} | {cell('asyncpg', pick, fmt)} | {cell('psycopg', pick, fmt)} |" for label, pick, fmt in rows]
    pipeline = " / ".join(f"{run['pipeline']['admissions_per_s']:,.0f}" for run in results["psycopg"])
    lines.append(f"| 32 calls in one pipeline (psycopg only): admissions/s | — | {pipeline} |")
    return "\n".join(lines)


if __name__ == "__main__":
    server = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
    results = asyncio.run(main(server, 3200))
    print(table(results))
    print(json.dumps(results))

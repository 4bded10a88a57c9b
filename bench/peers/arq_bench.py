"""ARQ: ``enqueue_job`` (sequential, 32 concurrent tasks) and enqueue → result with one ``arq`` worker."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from urllib.parse import urlsplit

from arq import create_pool
from arq.connections import RedisSettings

from common import counts, report, worker

URL = os.environ["PEER_REDIS_URL"]
_parts = urlsplit(URL)
SETTINGS = RedisSettings(host=_parts.hostname, port=_parts.port, database=int(_parts.path.strip("/") or 0))


async def noop(ctx: dict) -> None:
    return None


class WorkerSettings:
    functions = [noop]
    redis_settings = SETTINGS
    poll_delay = 0.005  # how often an idle worker looks for jobs (default 0.5 s)
    max_jobs = 32


async def main() -> None:
    sequential, concurrent, end_to_end = counts()
    url = URL
    pool = await create_pool(SETTINGS)
    await pool.flushdb()
    for _ in range(200):
        await pool.enqueue_job("noop")
    samples = []
    started = time.perf_counter()
    for _ in range(sequential):
        before = time.perf_counter()
        await pool.enqueue_job("noop")
        samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started

    async def caller(count: int, out: list[float]) -> None:
        for _ in range(count):
            before = time.perf_counter()
            await pool.enqueue_job("noop")
            out.append(time.perf_counter() - before)

    together: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(caller(concurrent // 32, together) for _ in range(32)))
    together_elapsed = time.perf_counter() - started
    await pool.flushdb()
    process = worker([sys.executable, "-m", "arq", "arq_bench.WorkerSettings"])
    try:
        await asyncio.sleep(2)
        done = []
        for n in range(end_to_end + 20):
            before = time.perf_counter()
            job = await pool.enqueue_job("noop")
            await job.result(timeout=10, poll_delay=0.001)
            if n >= 20:
                done.append(time.perf_counter() - before)
    finally:
        process.terminate()
        process.wait()
    report(sequential=samples, sequential_elapsed=elapsed, concurrent=together, concurrent_elapsed=together_elapsed,
           end_to_end=done)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

"""Taskiq with taskiq-redis (``ListQueueBroker``, ``RedisAsyncResultBackend``): ``kiq()``
(sequential, 32 concurrent tasks) and ``kiq()`` → ``wait_result`` with one ``taskiq worker``."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from common import counts, report, worker

URL = os.environ["PEER_REDIS_URL"]
broker = ListQueueBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))


@broker.task(task_name="noop")  # the same name in this script (__main__) and in the worker
async def noop() -> None:
    return None


async def main() -> None:
    sequential, concurrent, end_to_end = counts()
    url = URL
    await broker.startup()
    for _ in range(200):
        await noop.kiq()
    samples = []
    started = time.perf_counter()
    for _ in range(sequential):
        before = time.perf_counter()
        await noop.kiq()
        samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started

    async def caller(count: int, out: list[float]) -> None:
        for _ in range(count):
            before = time.perf_counter()
            await noop.kiq()
            out.append(time.perf_counter() - before)

    together: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(caller(concurrent // 32, together) for _ in range(32)))
    together_elapsed = time.perf_counter() - started
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    process = worker([sys.executable, "-m", "taskiq", "worker", "taskiq_bench:broker", "--workers", "1"])
    try:
        await asyncio.sleep(3)
        done = []
        for n in range(end_to_end + 20):
            before = time.perf_counter()
            task = await noop.kiq()
            await task.wait_result(check_interval=0.001, timeout=10)
            if n >= 20:
                done.append(time.perf_counter() - before)
    finally:
        process.terminate()
        process.wait()
        await broker.shutdown()
    report(sequential=samples, sequential_elapsed=elapsed, concurrent=together, concurrent_elapsed=together_elapsed,
           end_to_end=done)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

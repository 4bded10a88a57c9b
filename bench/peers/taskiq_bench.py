"""Taskiq with taskiq-redis (``ListQueueBroker``, ``RedisAsyncResultBackend``): ``kiq()``
(sequential, 32 concurrent tasks) and ``kiq()`` → ``wait_result`` with one ``taskiq worker``."""

from __future__ import annotations

import asyncio
import os
import sys

import redis.asyncio as aioredis
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from common import WARMUP, atimed, counts, gathered, report, worker

URL = os.environ["PEER_REDIS_URL"]
broker = ListQueueBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))


@broker.task(task_name="noop")  # the same name in this script (__main__) and in the worker
async def noop() -> None:
    return None


async def main() -> None:
    sequential, concurrent, end_to_end = counts()
    await broker.startup()
    alone = await atimed(noop.kiq, sequential, warmup=200)
    together = await gathered(noop.kiq, concurrent)
    client = aioredis.Redis.from_url(URL)
    await client.flushdb()
    await client.aclose()

    async def done() -> None:
        task = await noop.kiq()
        await task.wait_result(check_interval=0.001, timeout=10)

    with worker([sys.executable, "-m", "taskiq", "worker", "taskiq_bench:broker", "--workers", "1"]):
        await asyncio.sleep(3)
        latencies, _ = await atimed(done, end_to_end, warmup=WARMUP)
    await broker.shutdown()
    report(alone, together, latencies)


if __name__ == "__main__":
    asyncio.run(main())

"""ARQ: ``enqueue_job`` (sequential, 32 concurrent tasks) and enqueue → result with one ``arq`` worker."""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import urlsplit

from arq import create_pool
from arq.connections import RedisSettings

from common import WARMUP, atimed, counts, gathered, report, worker

_url = urlsplit(os.environ["PEER_REDIS_URL"])
SETTINGS = RedisSettings(host=_url.hostname, port=_url.port, database=int(_url.path.strip("/") or 0))


async def noop(ctx: dict) -> None:
    return None


class WorkerSettings:
    functions = [noop]
    redis_settings = SETTINGS
    poll_delay = 0.005  # how often an idle worker looks for jobs (default 0.5 s)
    max_jobs = 32


async def main() -> None:
    sequential, concurrent, end_to_end = counts()
    pool = await create_pool(SETTINGS)
    await pool.flushdb()
    alone = await atimed(lambda: pool.enqueue_job("noop"), sequential, warmup=200)
    together = await gathered(lambda: pool.enqueue_job("noop"), concurrent)
    await pool.flushdb()

    async def done() -> None:
        job = await pool.enqueue_job("noop")
        await job.result(timeout=10, poll_delay=0.001)

    with worker([sys.executable, "-m", "arq", "arq_bench.WorkerSettings"]):
        await asyncio.sleep(2)
        latencies, _ = await atimed(done, end_to_end, warmup=WARMUP)
    report(alone, together, latencies)


if __name__ == "__main__":
    asyncio.run(main())

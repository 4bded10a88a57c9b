"""RQ: ``Queue.enqueue`` (sequential, 32 threads) and enqueue → finished with one ``SimpleWorker``
(RQ's default worker forks a process per job)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from redis import Redis
from rq import Queue

from common import counts, report, timed, worker

URL = os.environ["PEER_REDIS_URL"]


def noop() -> None:
    return None


NOOP = "rq_bench.noop"  # by name: the worker imports this module, where the function is not __main__'s


def main() -> None:
    sequential, concurrent, end_to_end = counts()
    url = URL
    redis = Redis.from_url(url)
    redis.flushdb()
    queue = Queue("bench", connection=redis)
    for _ in range(200):
        queue.enqueue(NOOP)
    samples, elapsed = timed(lambda: queue.enqueue(NOOP), sequential)
    together: list[float] = []

    def caller() -> None:
        own = Queue("bench", connection=Redis.from_url(url))
        for _ in range(concurrent // 32):
            before = time.perf_counter()
            own.enqueue(NOOP)
            together.append(time.perf_counter() - before)

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as threads:
        for future in [threads.submit(caller) for _ in range(32)]:
            future.result()
    together_elapsed = time.perf_counter() - started
    redis.flushdb()
    process = worker([sys.executable, "-m", "rq.cli", "worker", "--url", url, "-w", "rq.worker.SimpleWorker", "bench"])
    try:
        time.sleep(2)
        done = []
        for n in range(end_to_end + 20):
            before = time.perf_counter()
            job = queue.enqueue(NOOP)
            while job.get_status(refresh=True) != "finished":
                time.sleep(0.001)
            if n >= 20:
                done.append(time.perf_counter() - before)
    finally:
        process.terminate()
        process.wait()
    report(sequential=samples, sequential_elapsed=elapsed, concurrent=together, concurrent_elapsed=together_elapsed,
           end_to_end=done)  # fmt: skip


if __name__ == "__main__":
    main()

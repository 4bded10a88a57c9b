"""Celery with its Redis broker and result backend: ``delay()`` (sequential, 32 threads) and
``delay().get()`` with one solo-pool worker."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from common import counts, report, timed, worker

URL = os.environ["PEER_REDIS_URL"]
app = Celery("celery_bench", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="noop")  # the same name in this script (__main__) and in the worker
def noop() -> None:
    return None


def main() -> None:
    sequential, concurrent, end_to_end = counts()
    url = URL
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()
    for _ in range(200):
        noop.delay()
    samples, elapsed = timed(noop.delay, sequential)
    together: list[float] = []

    def caller() -> None:
        for _ in range(concurrent // 32):
            before = time.perf_counter()
            noop.delay()
            together.append(time.perf_counter() - before)

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as threads:
        for future in [threads.submit(caller) for _ in range(32)]:
            future.result()
    together_elapsed = time.perf_counter() - started
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()
    process = worker([sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool=solo", "--without-gossip",
                      "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"])  # fmt: skip
    try:
        noop.delay().get(timeout=30)  # the worker is up
        done = []
        for n in range(end_to_end + 20):
            before = time.perf_counter()
            noop.delay().get(timeout=10, interval=0.001)
            if n >= 20:
                done.append(time.perf_counter() - before)
    finally:
        process.terminate()
        process.wait()
    report(sequential=samples, sequential_elapsed=elapsed, concurrent=together, concurrent_elapsed=together_elapsed,
           end_to_end=done)  # fmt: skip


if __name__ == "__main__":
    main()

"""Celery with its Redis broker and result backend: ``delay()`` (sequential, 32 threads) and
``delay().get()`` with one solo-pool worker."""

from __future__ import annotations

import os
import sys

from celery import Celery

from common import WARMUP, counts, report, threaded, timed, worker

URL = os.environ["PEER_REDIS_URL"]
app = Celery("celery_bench", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="noop")  # the same name in this script (__main__) and in the worker
def noop() -> None:
    return None


def flush() -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()


def main() -> None:
    sequential, concurrent, end_to_end = counts()
    flush()
    alone = timed(noop.delay, sequential, warmup=200)
    together = threaded(lambda: noop.delay, concurrent)
    flush()
    with worker([sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool=solo", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"]):  # fmt: skip
        noop.delay().get(timeout=30)  # the worker is up
        latencies, _ = timed(lambda: noop.delay().get(timeout=10, interval=0.001), end_to_end, warmup=WARMUP)
    report(alone, together, latencies)


if __name__ == "__main__":
    main()

"""RQ: ``Queue.enqueue`` (sequential, 32 threads) and enqueue → finished with one ``SimpleWorker``
(RQ's default worker forks a process per job)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from redis import Redis
from rq import Queue

from common import WARMUP, counts, report, threaded, timed, worker

URL = os.environ["PEER_REDIS_URL"]
NOOP = "rq_bench.noop"  # by name: the worker imports this module, where the function is not __main__'s


def noop() -> None:
    return None


def enqueuer() -> Callable[[], object]:
    own = Queue("bench", connection=Redis.from_url(URL))  # a connection for each thread
    return lambda: own.enqueue(NOOP)


def main() -> None:
    sequential, concurrent, end_to_end = counts()
    redis = Redis.from_url(URL)
    redis.flushdb()
    queue = Queue("bench", connection=redis)
    alone = timed(lambda: queue.enqueue(NOOP), sequential, warmup=200)
    together = threaded(enqueuer, concurrent)
    redis.flushdb()

    def done() -> None:
        job = queue.enqueue(NOOP)
        while job.get_status(refresh=True) != "finished":
            time.sleep(0.001)

    with worker([sys.executable, "-m", "rq.cli", "worker", "--url", URL, "-w", "rq.worker.SimpleWorker", "bench"]):
        time.sleep(2)
        latencies, _ = timed(done, end_to_end, warmup=WARMUP)
    report(alone, together, latencies)


if __name__ == "__main__":
    main()

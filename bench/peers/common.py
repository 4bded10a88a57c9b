"""What every peer's measurement shares (this folder runs in each peer's own virtual environment,
without Flue): the counts, timing helpers and the JSON line a measurement prints for bench.redis_peers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def counts() -> tuple[int, int, int]:
    """``SEQUENTIAL CONCURRENT END_TO_END`` from the command line (the Redis URL is ``$PEER_REDIS_URL``,
    which the peer's worker process, importing the same module, reads too)."""
    sequential, concurrent, end_to_end = sys.argv[1:4]
    return int(sequential), int(concurrent), int(end_to_end)


def timed(call: Callable[[], object], count: int) -> tuple[list[float], float]:
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        call()
        samples.append(time.perf_counter() - before)
    return samples, time.perf_counter() - started


def worker(command: list[str]) -> subprocess.Popen[bytes]:
    """The peer's own worker, in this folder, its output discarded."""
    return subprocess.Popen(command, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(**figures: object) -> None:
    print(json.dumps(figures))

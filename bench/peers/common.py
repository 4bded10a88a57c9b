"""What every peer's measurement shares (this folder runs in each peer's own virtual environment,
without Flue): the counts, the timed loops, the peer's worker process and the JSON line a measurement
prints for bench.redis_peers (raw latencies in seconds; bench.redis_peers summarises them)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 20


def counts() -> tuple[int, int, int]:
    """``SEQUENTIAL CONCURRENT END_TO_END`` from the command line (the Redis URL is ``$PEER_REDIS_URL``,
    which the peer's worker process, importing the same module, reads too)."""
    sequential, concurrent, end_to_end = sys.argv[1:4]
    return int(sequential), int(concurrent), int(end_to_end)


def timed(call: Callable[[], object], count: int, warmup: int = 0) -> tuple[list[float], float]:
    """Latencies of ``count`` calls after ``warmup`` untimed ones, and the seconds they took."""
    for _ in range(warmup):
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        call()
        samples.append(time.perf_counter() - before)
    return samples, time.perf_counter() - started


async def atimed(call: Callable[[], Awaitable[object]], count: int, warmup: int = 0) -> tuple[list[float], float]:
    for _ in range(warmup):
        await call()
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - before)
    return samples, time.perf_counter() - started


def threaded(make_call: Callable[[], Callable[[], object]], total: int, callers: int = 32) -> tuple[list[float], float]:
    """``total`` calls by ``callers`` threads, each with its own call from ``make_call``."""
    with ThreadPoolExecutor(callers) as threads:
        calls = list(threads.map(lambda _: make_call(), range(callers)))
        started = time.perf_counter()
        parts = list(threads.map(lambda call: timed(call, total // callers)[0], calls))
    return [sample for part in parts for sample in part], time.perf_counter() - started


async def gathered(call: Callable[[], Awaitable[object]], total: int, callers: int = 32) -> tuple[list[float], float]:
    started = time.perf_counter()
    parts = await asyncio.gather(*(atimed(call, total // callers) for _ in range(callers)))
    return [sample for part, _ in parts for sample in part], time.perf_counter() - started


@contextmanager
def worker(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """The peer's own worker, in this folder, its output discarded; terminated at the end."""
    process = subprocess.Popen(command, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait()


def report(sequential: tuple[list[float], float], concurrent: tuple[list[float], float], end_to_end: list[float]) -> None:
    print(json.dumps({"sequential": sequential[0], "sequential_elapsed": sequential[1], "concurrent": concurrent[0],
                      "concurrent_elapsed": concurrent[1], "end_to_end": end_to_end}))  # fmt: skip

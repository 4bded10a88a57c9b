"""Helpers of the tests on a real workerd: the smoke Worker's definition and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from flue_cloudflare.devtools import DurableObjectClass, LocalWorker, Queue, WorkerApp

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
T = TypeVar("T")


def smoke_app() -> WorkerApp:
    """The smoke-test Worker (``workers/smoke_worker.py``) with its object, cron trigger and queue."""
    return WorkerApp(
        name="smoke",
        main=WORKERS / "smoke_worker.py",
        sources=(WORKERS / "flue_probe.py",),
        # flue_node_like: the probe runs a whole workflow on the local target's memory store.
        packages=("flue_core", "flue_cloudflare", "flue_node_like"),
        durable_objects=(DurableObjectClass("Ledger", "LEDGER"),),
        crons=("* * * * *",),
        queues=(Queue("jobs", "JOBS", settings={"maxBatchSize": 1, "maxBatchTimeout": 1}),),
    )


def eventually(probe: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.1) -> T:
    """``probe()``'s first truthy answer, polled until ``timeout`` seconds; an AssertionError after."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {timeout} s (last answer: {answer!r})")
        time.sleep(interval)


def entries(worker: LocalWorker, path: str) -> list[dict[str, Any]]:
    """The entries of a ledger object as the smoke Worker answers them."""
    response = httpx.get(worker.url + path, timeout=30)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["entries"]
    return result

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


def store_app() -> WorkerApp:
    """The store Worker (``workers/store_worker.py``): the target's objects as a host's store."""
    return WorkerApp.flue("store", WORKERS / "store_worker.py")


def runs_app() -> WorkerApp:
    """The runs Worker (``workers/runs_worker.py``): runs executed by their objects, a cron trigger,
    a queue."""
    return WorkerApp.flue(
        "runs",
        WORKERS / "runs_worker.py",
        sources=(WORKERS / "lifecycle_workflows.py",),
        crons=("* * * * *",),
        queues=(Queue("jobs", "JOBS", settings={"maxBatchSize": 1, "maxBatchTimeout": 1}),),
    )


class RunsClient:
    """Requests to the runs Worker as a reader (``x-reader: yes``) would make them."""

    def __init__(self, worker: LocalWorker) -> None:
        self.url = worker.url
        self.http = httpx.Client(base_url=worker.url, timeout=60, headers={"x-reader": "yes"})

    def start(self, workflow: str, input: Any = None, **options: Any) -> str:
        body = {} if input is None else {"json": input}
        response = self.http.post(f"/workflows/{workflow}", **body, **options)
        assert response.status_code == 202, response.text
        run_id: str = response.json()["runId"]
        return run_id

    def record(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/runs/{run_id}", params={"meta": ""})
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        return record

    def events(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/runs/{run_id}", params={"offset": "-1"})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        return events

    def types(self, run_id: str) -> list[str]:
        return [event["type"] for event in self.events(run_id)]

    def wait(self, run_id: str, status: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """The record once the run ended (or reached ``status``)."""

        def reached() -> dict[str, Any] | None:
            record = self.record(run_id)
            done = record["status"] == status if status else record["status"] in ("completed", "failed", "cancelled")
            return record if done else None

        return eventually(reached, timeout=timeout, interval=0.05)

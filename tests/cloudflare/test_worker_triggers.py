"""Runs started by the Worker's own triggers on a real workerd: a cron trigger (workerd's ``cron.js``
with its test clock) fires ``scheduled()``, and a queue (``queues.js``) delivers to ``queue()``; both
call ``await workflows.start(...)``. The runs show up in ``runs.list`` and stream to the host."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from httpx_sse import connect_sse

from flue_cloudflare.devtools import LocalWorker
from workerd_support import RunsClient, eventually


@pytest.fixture(scope="module")
def client(runs_worker: LocalWorker) -> RunsClient:
    return RunsClient(runs_worker)


def listed(client: RunsClient, workflow: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = client.http.get("/runs", params={"workflow": workflow, "limit": 100}).json()["runs"]
    return runs


def follow(client: RunsClient, run_id: str) -> list[dict[str, Any]]:
    """Every event of the run, read over SSE from the start until the stream closes."""
    events: list[dict[str, Any]] = []
    with connect_sse(client.http, "GET", f"/runs/{run_id}", params={"offset": "-1", "live": "sse"}) as source:
        for message in source.iter_sse():
            if message.event == "data":
                events += json.loads(message.data)
            elif message.event == "control" and json.loads(message.data).get("streamClosed"):
                return events
    raise AssertionError(f"the stream of run {run_id} ended before the run")


def test_a_cron_trigger_starts_a_run_that_is_listed_and_streams_to_the_host(
    runs_worker: LocalWorker, client: RunsClient
) -> None:
    occurrence = runs_worker.fire_crons_soon()
    tick = {"cron": "* * * * *", "scheduledTime": occurrence}
    (run,) = eventually(lambda: [r for r in listed(client, "cron-tick") if r["input"] == tick], timeout=30)
    assert run["key"] == f"cron:{occurrence}"
    events = follow(client, run["runId"])
    assert [e["type"] for e in events] == ["run_queued", "run_start", "ticked", "run_end"]
    assert events[2]["data"] == tick and events[-1]["data"]["result"] == tick


def test_a_schedule_declared_on_a_workflow_exists_in_the_worker_with_its_time_zone(client: RunsClient) -> None:
    (nightly,) = [s for s in client.http.get("/schedules").json()["schedules"] if s["name"] == "nightly"]
    assert nightly["cron"] == "0 3 * * *" and nightly["timezone"] == "Europe/Berlin" and nightly["declared"]
    assert nightly["input"] == {"at": "03:00"}


def test_a_queue_message_starts_a_run(client: RunsClient) -> None:
    body = f"job-{uuid.uuid4().hex}"
    assert client.http.post("/test/queue", content=body).status_code == 202
    (run,) = eventually(lambda: [r for r in listed(client, "job") if r["input"] == {"body": body}], timeout=30)
    assert client.wait(run["runId"])["result"] == {"body": body}

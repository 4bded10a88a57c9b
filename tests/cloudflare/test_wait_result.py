"""``POST /workflows/<name>?wait=result`` on a real workerd: the waiting call executes a run still in
line in the run's object at once, rather than once its alarm rings, and the run is the same as any
other — its events, its listing, its workflow's concurrency limit, a sleep; killed with -9 in the
middle, it resumes from the alarm armed at its admission. And the listing follows a long execution
(the copies an execution makes reach the index as it goes, not only when it stops).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flue_cloudflare.devtools import LocalWorker
from workerd_support import RunsClient, eventually, runs_app


@pytest.fixture(scope="module")
def client(runs_worker: LocalWorker) -> RunsClient:
    return RunsClient(runs_worker)


def waited(client: RunsClient, workflow: str, input: Any) -> httpx.Response:
    return client.http.post(f"/workflows/{workflow}", params={"wait": "result"}, json=input)


def test_a_waited_run_is_answered_with_its_result_and_listed_as_it_ended(client: RunsClient) -> None:
    answer = waited(client, "greet", {"name": "now", "times": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == {"text": "hello now hello now"}
    record = client.record(body["runId"])
    assert record["status"] == "completed" and record["attempt"] == 1 and record["recoveries"] == 0
    assert client.types(body["runId"]) == ["run_queued", "run_start", "step", "progress", "greeted", "run_end"]

    def listed() -> dict[str, Any] | None:
        runs = client.http.get("/runs", params={"workflow": "greet", "limit": 100}).json()["runs"]
        return next((run for run in runs if run["runId"] == body["runId"] and run["status"] == "completed"), None)

    assert eventually(listed) == record


def test_a_waited_run_that_sleeps_is_answered_once_its_alarm_woke_it(client: RunsClient) -> None:
    answer = waited(client, "sleeper", {"seconds": 0.5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {"before": 1, "attempt": 1}
    assert client.types(answer.json()["runId"]) == [
        "run_queued", "run_start", "step", "run_waiting", "run_resume", "run_end"
    ]  # fmt: skip


def test_a_long_execution_is_listed_running_while_it_goes_on(client: RunsClient) -> None:
    # The copies an execution makes reach the index when it stops, and every half second meanwhile.
    run_id = client.start("slow-once", {"seconds": 30})
    eventually(lambda: "working" in client.types(run_id))

    def listed_running() -> bool | None:
        runs = client.http.get("/runs", params={"workflow": "slow-once", "limit": 100}).json()["runs"]
        return any(run["runId"] == run_id and run["status"] == "running" for run in runs) or None

    assert eventually(listed_running, timeout=5)
    assert client.http.post(f"/runs/{run_id}/cancel").status_code == 200
    assert client.wait(run_id)["status"] == "cancelled"


def test_waited_runs_of_a_limited_workflow_still_run_one_at_a_time(client: RunsClient) -> None:
    answers: list[httpx.Response] = []
    callers = [
        threading.Thread(target=lambda n=n: answers.append(waited(client, "one-at-a-time", {"n": n, "group": "w"})))
        for n in range(3)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200]
    spans = []
    for answer in answers:
        events = {e["type"]: e["timestamp"] for e in client.events(answer.json()["runId"])}
        spans.append((events["entered"], events["left"]))
    spans.sort()
    for (_, left), (entered, _) in zip(spans, spans[1:], strict=False):
        assert left <= entered  # never two at once


def test_a_waited_run_cut_short_by_kill_9_resumes_from_its_alarm(local_worker: Callable[..., LocalWorker]) -> None:
    worker = local_worker(runs_app())
    client = RunsClient(worker)
    started: list[str] = []

    def wait_for_it() -> None:
        try:
            waited(client, "slow", {"seconds": 60})
        except httpx.HTTPError:
            pass  # workerd was killed under the waiting call

    caller = threading.Thread(target=wait_for_it, daemon=True)
    caller.start()

    def working() -> str | None:
        runs = client.http.get("/runs", params={"workflow": "slow", "limit": 10}).json()["runs"]
        started[:] = [run["runId"] for run in runs]
        return next((run_id for run_id in started if "working" in client.types(run_id)), None)

    run_id = eventually(working)
    worker.kill()
    caller.join(timeout=30)
    worker.start()
    client = RunsClient(worker)
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"first": 1, "attempt": 1}
    assert record["recoveries"] == 1
    assert client.types(run_id) == [
        "run_queued", "run_start", "step", "working", "run_interrupted", "run_resume", "working", "run_end"
    ]  # fmt: skip

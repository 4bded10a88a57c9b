"""Runs executed inside the Worker on a real workerd: each by its own Durable Object, driven by the
object's alarm — admission over HTTP, durable sleeps, signals, child runs, retries, concurrency
limits, idempotent starts, cancellation, and reads served from the run's object (catch-up,
long-poll, SSE, ``?meta``, closed by default).

One workerd serves the module (the runs Worker, ``workers/runs_worker.py``).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from httpx_sse import connect_sse

from flue_cloudflare.devtools import LocalWorker
from workerd_support import RunsClient, eventually


@pytest.fixture(scope="module")
def client(runs_worker: LocalWorker) -> RunsClient:
    return RunsClient(runs_worker)


def test_a_run_admitted_over_http_is_executed_by_its_object(client: RunsClient) -> None:
    run_id = client.start("greet", {"name": "workerd", "times": 2})
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"text": "hello workerd hello workerd"}
    assert record["attempt"] == 1 and record["startedAt"] >= record["createdAt"]
    assert client.types(run_id) == ["run_queued", "run_start", "step", "progress", "greeted", "run_end"]


def test_wait_result_answers_with_the_result(client: RunsClient) -> None:
    response = client.http.post("/workflows/greet", params={"wait": "result"}, json={"name": "wait"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["result"] == {"text": "hello wait"}
    assert body["streamUrl"] == f"/runs/{body['runId']}"


def test_run_reads_are_closed_unless_granted(client: RunsClient) -> None:
    run_id = client.start("noop")
    client.wait(run_id)
    for params in ({"meta": ""}, {"offset": "-1"}, {}):
        refused = httpx.get(f"{client.url}/runs/{run_id}", params=params, timeout=30)
        unknown = httpx.get(f"{client.url}/runs/run_01NOSUCHRUN0000000000000000", params=params, timeout=30)
        assert refused.status_code == unknown.status_code == 404
        assert refused.json()["error"]["code"] == unknown.json()["error"]["code"] == "run_not_found"
    assert httpx.get(f"{client.url}/runs", timeout=30).json()["error"]["code"] == "route_not_found"


def test_a_durable_sleep_parks_the_run_until_its_alarm(client: RunsClient) -> None:
    run_id = client.start("sleeper", {"seconds": 1.0})
    waiting = client.wait(run_id, "waiting")
    assert waiting["waitingFor"]["kind"] == "sleep" and waiting["wakeAt"] is not None
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"before": 1, "attempt": 1}
    events = client.events(run_id)
    assert [e["type"] for e in events] == ["run_queued", "run_start", "step", "run_waiting", "run_resume", "run_end"]
    until = next(e for e in events if e["type"] == "run_waiting")["data"]["until"]
    resumed = next(e for e in events if e["type"] == "run_resume")["timestamp"]
    assert resumed >= until


def test_a_signal_sent_over_http_resumes_the_waiting_run(client: RunsClient) -> None:
    run_id = client.start("approval")
    waiting_for = client.wait(run_id, "waiting")["waitingFor"]
    assert waiting_for["kind"] == "signal" and waiting_for["name"] == "approval"
    sent = client.http.post(f"/runs/{run_id}/signals/approval", json={"approved": True, "by": "ada"})
    assert sent.status_code == 202, sent.text
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"approved": True, "by": "ada"}
    assert client.types(run_id) == [
        "run_queued", "run_start", "run_waiting", "signal_received", "run_resume", "signal_delivered", "run_end"
    ]  # fmt: skip


def test_a_bad_signal_is_refused_and_changes_nothing(client: RunsClient) -> None:
    run_id = client.start("approval")
    client.wait(run_id, "waiting")
    refused = client.http.post(f"/runs/{run_id}/signals/approval", json={"approved": "maybe"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_signal"
    assert client.record(run_id)["status"] == "waiting"
    assert client.http.post(f"/runs/{run_id}/cancel").status_code == 200


def test_children_run_in_their_own_objects_and_wake_their_parent(client: RunsClient) -> None:
    run_id = client.start("fan-out", {"count": 4})
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"]["sum"] == 0 + 1 + 4 + 9
    children = record["result"]["children"]
    for child_id in children:
        child = client.record(child_id)
        assert child["parentRunId"] == run_id and child["status"] == "completed"
    listed = client.http.get("/runs", params={"workflow": "square", "limit": 100}).json()["runs"]
    assert set(children) <= {run["runId"] for run in listed}
    assert client.types(run_id).count("child_started") == 4


def test_a_failed_attempt_is_retried_after_its_back_off_with_steps_replayed(client: RunsClient) -> None:
    run_id = client.start("flaky")
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"first": 1, "attempt": 3}
    types = client.types(run_id)
    assert types.count("run_retry") == 2 and types.count("run_waiting") == 2
    replays = [e for e in client.events(run_id) if e["type"] == "step"]
    assert [e["data"]["replayed"] for e in replays] == [False, True, True]


def test_a_concurrency_limit_runs_one_at_a_time_in_admission_order(client: RunsClient) -> None:
    group = uuid.uuid4().hex
    run_ids = [client.start("one-at-a-time", {"n": n, "group": group}) for n in range(4)]
    spans = []
    for run_id in run_ids:
        assert client.wait(run_id)["status"] == "completed"
        events = {e["type"]: e["timestamp"] for e in client.events(run_id)}
        spans.append((events["entered"], events["left"]))
    assert spans == sorted(spans)
    for (_, left), (entered, _) in zip(spans, spans[1:], strict=False):
        assert left <= entered  # never two at once


def test_a_key_admits_one_run_however_often_it_is_used(client: RunsClient) -> None:
    key = f"order-{uuid.uuid4().hex}"
    answers = [
        client.http.post("/workflows/greet", json={"name": "k"}, headers={"idempotency-key": key}) for _ in range(3)
    ]
    assert {a.status_code for a in answers} == {202} and len({a.json()["runId"] for a in answers}) == 1
    conflict = client.http.post("/workflows/greet", json={"name": "other"}, headers={"idempotency-key": key})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_key_conflict"


def test_a_waiting_run_is_cancelled_over_http(client: RunsClient) -> None:
    run_id = client.start("approval")
    client.wait(run_id, "waiting")
    answer = client.http.post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert client.types(run_id)[-2:] == ["run_waiting", "run_end"]


def test_runs_are_listed_newest_first_in_pages(client: RunsClient) -> None:
    run_ids = [client.start("noop") for _ in range(5)]
    first = client.http.get("/runs", params={"workflow": "noop", "limit": 3}).json()
    second = client.http.get("/runs", params={"workflow": "noop", "limit": 3, "cursor": first["nextCursor"]}).json()
    listed = [run["runId"] for run in first["runs"] + second["runs"]]
    assert listed[:5] == run_ids[::-1]
    bad = client.http.get("/runs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


def test_a_step_result_too_large_for_an_object_fails_the_run_with_a_typed_error(client: RunsClient) -> None:
    record = client.wait(client.start("big", {"where": "step", "size": 3_000_000}))
    assert record["status"] == "failed" and record["error"]["type"].endswith("ValueTooLarge")
    assert "2000000 bytes" in record["error"]["message"]


def test_a_result_too_large_for_an_object_fails_the_run_with_a_typed_error(client: RunsClient) -> None:
    record = client.wait(client.start("big", {"where": "result", "size": 3_000_000}))
    assert record["status"] == "failed" and record["error"]["code"] == "value_too_large"
    assert client.types(record["runId"])[-1] == "run_end"


def test_a_long_poll_answers_when_the_next_event_is_stored(client: RunsClient) -> None:
    run_id = client.start("sleeper", {"seconds": 0.8})
    client.wait(run_id, "waiting")
    tail = client.http.get(f"/runs/{run_id}", params={"offset": "-1"}).headers["stream-next-offset"]
    began = time.monotonic()
    response = client.http.get(f"/runs/{run_id}", params={"offset": tail, "live": "long-poll"})
    assert response.status_code == 200
    assert [e["type"] for e in response.json()][0] == "run_resume"
    assert time.monotonic() - began < 5


def test_an_sse_reader_on_the_host_follows_a_run_to_its_end(client: RunsClient) -> None:
    run_id = client.start("sleeper", {"seconds": 0.5})
    seen: list[str] = []
    with connect_sse(client.http, "GET", f"/runs/{run_id}", params={"offset": "-1", "live": "sse"}) as source:
        for message in source.iter_sse():
            if message.event == "data":
                seen += [event["type"] for event in json.loads(message.data)]
            if message.event == "control" and json.loads(message.data).get("streamClosed"):
                break
    assert seen == ["run_queued", "run_start", "step", "run_waiting", "run_resume", "run_end"]


def test_a_run_executing_in_its_object_is_cancelled_over_http(client: RunsClient) -> None:
    run_id = client.start("slow-once", {"seconds": 30})
    eventually(lambda: "working" in client.types(run_id))
    answer = client.http.post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert client.types(run_id) == ["run_queued", "run_start", "working", "run_end"]

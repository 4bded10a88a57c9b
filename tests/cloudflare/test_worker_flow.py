"""Flow control of runs executed by their own Durable Objects on a real workerd: a concurrency limit
per key, priorities among runs waiting for a slot, a limit raised while runs wait, a rate limit on
first starts, debounced starts.

One workerd serves the module (the flow Worker, ``workers/flow_worker.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flue_cloudflare.devtools import LocalWorker, WorkerApp
from workerd_support import WORKERS, RunsClient


@pytest.fixture(scope="module")
def client(local_worker: Callable[..., LocalWorker]) -> RunsClient:
    app = WorkerApp.flue("flow", WORKERS / "flow_worker.py", sources=(WORKERS / "flow_workflows.py",))
    return RunsClient(local_worker(app))


def _span(record: dict[str, Any]) -> tuple[float, float]:
    return record["result"]["began"], record["result"]["ended"]


def _overlap(one: dict[str, Any], two: dict[str, Any]) -> bool:
    (a, b), (c, d) = _span(one), _span(two)
    return a < d and c < b


def test_a_busy_concurrency_key_holds_back_its_own_runs_only(client: RunsClient) -> None:
    tenant = uuid.uuid4().hex[:8]
    first = client.start("per-tenant", {"tenant": f"a{tenant}"})
    second = client.start("per-tenant", {"tenant": f"a{tenant}"})
    other = client.start("per-tenant", {"tenant": f"b{tenant}"})
    records = [client.wait(run_id) for run_id in (first, second, other)]
    assert all(record["status"] == "completed" for record in records)
    assert records[0]["concurrencyKey"] == f"a{tenant}" and records[2]["concurrencyKey"] == f"b{tenant}"
    assert not _overlap(records[0], records[1])
    assert _overlap(records[0], records[2]) or _overlap(records[1], records[2])


def test_runs_waiting_for_a_slot_start_highest_priority_first(client: RunsClient) -> None:
    holder = client.start("ranked", {"hold": 1.5})
    client.wait(holder, status="running")
    low = client.start("ranked", {"n": "low"}, params={"priority": "-5"})
    middle = client.start("ranked", {"n": "middle"})
    high = client.start("ranked", {"n": "high"}, params={"priority": "10"})
    records = {name: client.wait(run_id) for name, run_id in (("low", low), ("middle", middle), ("high", high))}
    assert records["high"]["priority"] == 10 and records["low"]["priority"] == -5
    began = sorted(records, key=lambda name: records[name]["result"]["began"])
    assert began == ["high", "middle", "low"]


def test_a_rate_limit_spaces_first_starts_and_loses_none(client: RunsClient) -> None:
    run_ids = [client.start("paced", {"n": n}) for n in range(5)]
    records = [client.wait(run_id, timeout=60) for run_id in run_ids]
    assert all(record["status"] == "completed" for record in records)
    starts = sorted(record["result"]["began"] for record in records)
    for n in range(len(starts) - 2):  # at most 2 starts in any second
        assert starts[n + 2] - starts[n] >= 0.95, starts


def test_debounced_starts_fold_into_one_run_with_the_last_input(client: RunsClient) -> None:
    topic = uuid.uuid4().hex[:8]
    first = client.start("settled", {"topic": topic, "n": 1})
    second = client.start("settled", {"topic": topic, "n": 2})
    assert second == first
    record = client.wait(first)
    assert record["status"] == "completed" and record["result"] == {"topic": topic, "n": 2}
    assert record["debounceKey"] == topic
    assert client.types(first)[:2] == ["run_queued", "run_debounced"]
    later = client.start("settled", {"topic": topic, "n": 3})
    assert later != first


def test_a_fold_gives_the_run_the_priority_and_concurrency_key_of_the_last_start(client: RunsClient) -> None:
    topic = uuid.uuid4().hex[:8]
    first = client.start("batched", {"topic": topic, "tenant": f"a{topic}"}, params={"priority": "-3"})
    second = client.start("batched", {"topic": topic, "tenant": f"b{topic}"}, params={"priority": "7"})
    assert second == first
    record = client.wait(first)
    assert record["status"] == "completed" and record["result"]["tenant"] == f"b{topic}"
    assert (record["priority"], record["concurrencyKey"]) == (7, f"b{topic}")


def test_a_debounced_run_cancelled_while_pending_takes_no_more_starts(client: RunsClient) -> None:
    topic = uuid.uuid4().hex[:8]
    first = client.start("settled", {"topic": topic, "n": 1})
    cancelled = client.http.post(f"/runs/{first}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    fresh = client.start("settled", {"topic": topic, "n": 2})
    assert fresh != first
    again = client.start("settled", {"topic": topic, "n": 3})
    assert again == fresh
    assert client.wait(fresh)["result"] == {"topic": topic, "n": 3}
    assert client.record(first)["input"] == {"topic": topic, "n": 1}


def _limit(client: RunsClient, name: str, op: str, request: dict[str, Any]) -> Any:
    response = client.http.post(f"/limits/{name}/{op}", json=request)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_raised_concurrency_limit_gives_its_free_slots_to_the_runs_in_line_at_once(client: RunsClient) -> None:
    holder = client.start("widened", {"hold": 5.0})
    client.wait(holder, status="running")
    waiting = [client.start("widened", {"n": n}) for n in range(3)]
    time.sleep(1.5)  # their objects ask for a slot and get in line
    # A run of a deploy that raised the limit to 10 asks for a slot, last in line: the free slots go
    # to the runs waiting (their objects told at once) and to it, not only when the holder is done.
    newcomer = {"runId": f"run_{uuid.uuid4().hex}", "cap": 10, "readyAt": "2999-01-01T00:00:00.000Z"}
    try:
        assert _limit(client, "widened", "acquire", newcomer) is True
        records = [client.wait(run_id) for run_id in waiting]
        held = client.wait(holder)
    finally:
        _limit(client, "widened", "release", {"runId": newcomer["runId"], "cap": 1})
    assert all(record["status"] == "completed" for record in records)
    assert all(record["result"]["began"] < held["result"]["ended"] for record in records)

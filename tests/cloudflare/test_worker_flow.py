"""Flow control of runs executed by their own Durable Objects on a real workerd: a concurrency limit
per key, priorities among runs waiting for a slot, a rate limit on first starts, debounced starts.

One workerd serves the module (the flow Worker, ``workers/flow_worker.py``).
"""

from __future__ import annotations

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

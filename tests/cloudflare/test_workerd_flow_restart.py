"""Flow control when workerd is killed with -9 and started again on the same storage: nothing is lost.

Runs of two concurrency keys (one slot each) are cut short while they hold their key's slot, with
others of their keys in line: each continues, holding its slot across the crash, and the line moves
on after it, one run per key at a time. Runs over a rate limit wait for its window, which goes on
across the crash: they start as it allows. A debounced run with a fold pending starts once, at the
end of its window, with the last input.

The fixture starts the runs of the three, kills workerd once (all of them in flight) and starts it
again; each test checks one. Its window and debounce (``paced-slowly``, ``settled-slowly``: 15 s)
outlast a restart of workerd, so that they are still running when it answers again; the tests' facts
hold whatever the restart takes (a slower one leaves less of them to wait for).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from itertools import combinations
from typing import Any

import pytest

from flue_cloudflare.devtools import LocalWorker, WorkerApp
from workerd_support import WORKERS, RunsClient, eventually

#: ``paced-slowly``'s rate limit and ``settled-slowly``'s debounce, in seconds.
RATE, PER = 2, 15.0
DEBOUNCE = 15.0
#: A run's start is seen (in its result or record) a moment after its limit allowed it; under load,
#: up to this many seconds. A rate limit or a debounce forgotten in the crash would start the runs
#: right after the restart, well inside their windows.
LAG = 1.0
#: Seconds the holders hold their slot before the crash (they are surely cut short) and after it.
HOLD, THEN = 60.0, 2.0


@pytest.fixture(scope="module")
def crashed(local_worker: Callable[..., LocalWorker]) -> dict[str, Any]:
    app = WorkerApp.flue("flow", WORKERS / "flow_worker.py", sources=(WORKERS / "flow_workflows.py",))
    worker = local_worker(app)
    client = RunsClient(worker)
    tag = uuid.uuid4().hex[:8]

    # A rate limit: two runs start at once, two wait for the window.
    paced = [client.start("paced-slowly", {"n": n}) for n in range(4)]
    # Debounced starts: the second folds into the run of the first, which waits for its window.
    topic = f"t{tag}"
    debounced = client.start("settled-slowly", {"topic": topic, "n": 1})
    folded_at = time.time()
    assert client.start("settled-slowly", {"topic": topic, "n": 2}) == debounced
    # Per-key concurrency: a run of each key holds its slot, the others get in line behind it.
    keys = {"a": f"a{tag}", "b": f"b{tag}"}
    holders = {key: client.start("held", {"tenant": t, "hold": HOLD, "then": THEN}) for key, t in keys.items()}
    for run_id in holders.values():
        eventually(lambda: "began" in client.types(run_id))  # noqa: B023 - called at once
    waiting = {
        "a": [client.start("held", {"tenant": keys["a"]}) for _ in range(2)],
        "b": [client.start("held", {"tenant": keys["b"]})],
    }

    # Whichever two asked first started; the others wait for the window.
    eventually(lambda: [client.record(run_id)["status"] for run_id in paced].count("completed") == RATE)
    time.sleep(1.0)  # the waiting runs' objects ask their limits and get in line
    assert sorted(client.record(run_id)["status"] for run_id in paced) == ["completed"] * RATE + ["queued"] * 2
    assert client.record(debounced)["status"] == "scheduled"
    assert all(client.record(run_id)["status"] == "running" for run_id in holders.values())
    assert all(client.record(run_id)["status"] == "queued" for runs in waiting.values() for run_id in runs)

    worker.kill()
    killed_at = time.time()
    worker.start()
    return {
        "client": RunsClient(worker),
        "killed_at": killed_at,
        "paced": paced,
        "debounced": debounced,
        "topic": topic,
        "folded_at": folded_at,
        "holders": holders,
        "waiting": waiting,
    }


def _executions(client: RunsClient, run_id: str, record: dict[str, Any], killed_at: float) -> list[tuple[float, float]]:
    """When each execution of the run began and ended: the one that ended it, as its result says;
    one that began before the crash and is not that one, cut short by the kill."""
    began = [event["data"]["at"] for event in client.events(run_id) if event["type"] == "began"]
    result = record["result"]
    return [(at, result["ended"]) if at == result["began"] else (at, killed_at) for at in began]


def test_runs_of_a_concurrency_key_go_one_at_a_time_across_the_crash_and_all_complete(
    crashed: dict[str, Any],
) -> None:
    client, killed_at = crashed["client"], crashed["killed_at"]
    for key, holder in crashed["holders"].items():
        run_ids = [holder, *crashed["waiting"][key]]
        records = {run_id: client.wait(run_id, timeout=90) for run_id in run_ids}
        assert all(record["status"] == "completed" for record in records.values()), records

        # The holder was cut short while holding its slot, and continued its attempt after the restart.
        assert records[holder]["recoveries"] == 1 and records[holder]["attempt"] == 1
        assert "run_interrupted" in client.types(holder)
        executions = {run_id: _executions(client, run_id, records[run_id], killed_at) for run_id in run_ids}
        assert len(executions[holder]) == 2 and executions[holder][0][0] < killed_at < executions[holder][1][0]
        # The runs in line executed once each, after the crash.
        for run_id in crashed["waiting"][key]:
            assert len(executions[run_id]) == 1 and executions[run_id][0][0] > killed_at

        # Never two executions of the key's runs at once.
        spans = sorted(span for spans in executions.values() for span in spans)
        for one, two in combinations(spans, 2):
            assert not (one[0] < two[1] and two[0] < one[1]), (one, two)


def test_runs_over_a_rate_limit_start_as_its_window_allows_across_the_crash(crashed: dict[str, Any]) -> None:
    client = crashed["client"]
    records = [client.wait(run_id, timeout=90) for run_id in crashed["paced"]]
    assert all(record["status"] == "completed" for record in records), records
    assert all(client.types(record["runId"]).count("run_start") == 1 for record in records)
    starts = sorted(record["result"]["began"] for record in records)
    assert starts[RATE - 1] < crashed["killed_at"]  # the first ones started before the crash
    for n in range(len(starts) - RATE):  # at most RATE first starts in any PER seconds
        assert starts[n + RATE] - starts[n] >= PER - LAG, starts


def test_a_debounced_run_starts_once_with_the_last_input_after_the_crash(crashed: dict[str, Any]) -> None:
    client, run_id, topic = crashed["client"], crashed["debounced"], crashed["topic"]
    record = client.wait(run_id, timeout=90)
    assert record["status"] == "completed" and record["result"] == {"topic": topic, "n": 2}
    assert record["input"] == {"topic": topic, "n": 2} and record["recoveries"] == 0
    assert client.types(run_id) == ["run_queued", "run_debounced", "run_start", "run_end"]
    # Not before the window of the last start was over.
    assert datetime.fromisoformat(record["startedAt"]).timestamp() >= crashed["folded_at"] + DEBOUNCE - LAG
    # It is no longer pending: the next start is a run of its own.
    assert client.start("settled-slowly", {"topic": topic, "n": 3}) != run_id

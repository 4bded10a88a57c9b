"""workerd killed with -9 in the middle of runs, then started on the same storage: no run is left
running. An execution cut short resumes its attempt with its steps replayed, whatever the
workflow's retries (with ``max_recoveries=0`` it fails ``run_interrupted``); a sleeping run wakes on
time; a run waiting for a signal takes it. The alarm that was being handled when workerd died rings again after the restart.

The fixture starts the runs, kills workerd once and starts it again; each test checks one run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flue_cloudflare.devtools import LocalWorker
from workerd_support import RunsClient, eventually, runs_app


@pytest.fixture(scope="module")
def restarted(local_worker: Callable[..., LocalWorker]) -> dict[str, Any]:
    worker = local_worker(runs_app())
    client = RunsClient(worker)
    runs = {
        "resumed": client.start("slow", {"seconds": 60}),
        "interrupted": client.start("slow-legacy", {"seconds": 60}),
        "sleeping": client.start("sleeper", {"seconds": 3}),
        "signalled": client.start("approval"),
    }
    for name in ("resumed", "interrupted"):
        eventually(lambda: "working" in client.types(runs[name]))  # noqa: B023 - called at once
    client.wait(runs["sleeping"], "waiting")
    client.wait(runs["signalled"], "waiting")
    worker.kill()
    worker.start()
    return {"client": RunsClient(worker), "runs": runs}


def test_an_execution_cut_short_resumes_its_attempt_with_its_steps_replayed(restarted: dict[str, Any]) -> None:
    client, run_id = restarted["client"], restarted["runs"]["resumed"]
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"first": 1, "attempt": 1}
    assert record["attempt"] == 1 and record["recoveries"] == 1  # no retry used up
    events = client.events(run_id)
    assert [e["type"] for e in events] == [
        "run_queued", "run_start", "step", "working", "run_interrupted", "run_resume", "working", "run_end"
    ]  # fmt: skip
    interrupted = next(e for e in events if e["type"] == "run_interrupted")
    assert interrupted["data"] == {"attempt": 1, "action": "resume", "reason": "died", "recoveries": 1}


def test_with_max_recoveries_0_a_run_cut_short_fails_interrupted(restarted: dict[str, Any]) -> None:
    client, run_id = restarted["client"], restarted["runs"]["interrupted"]
    record = client.wait(run_id)
    assert record["status"] == "failed" and record["error"]["code"] == "run_interrupted"
    assert client.types(run_id) == ["run_queued", "run_start", "working", "run_end"]


def test_a_sleeping_run_wakes_after_the_restart(restarted: dict[str, Any]) -> None:
    client, run_id = restarted["client"], restarted["runs"]["sleeping"]
    record = client.wait(run_id)
    assert record["status"] == "completed" and record["result"] == {"before": 1, "attempt": 1}


def test_a_run_waiting_for_a_signal_takes_it_after_the_restart(restarted: dict[str, Any]) -> None:
    client, run_id = restarted["client"], restarted["runs"]["signalled"]
    assert client.record(run_id)["status"] == "waiting"
    sent = client.http.post(f"/runs/{run_id}/signals/approval", json={"approved": False, "by": "restart"})
    assert sent.status_code == 202, sent.text
    assert client.wait(run_id)["result"] == {"approved": False, "by": "restart"}


def test_the_listing_agrees_with_the_records_after_the_restart(restarted: dict[str, Any]) -> None:
    client = restarted["client"]
    run_ids = set(restarted["runs"].values())
    for name in ("resumed", "interrupted", "sleeping"):  # the signalled one stays as it is until signalled
        client.wait(restarted["runs"][name])
    listed = {run["runId"]: run for run in client.http.get("/runs", params={"limit": 100}).json()["runs"]}
    for run_id in run_ids:
        assert listed[run_id] == client.record(run_id)

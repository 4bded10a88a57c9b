"""The foundation of the Cloudflare target on a real workerd: a Python Worker, a SQLite-backed Python
Durable Object named like a run, its alarm, a cron trigger through workerd's own cron.js, a queue
through queues.js, and flue_core, pydantic and Starlette working inside the Worker.

One workerd serves every test of this module (the smoke Worker, ``workers/smoke_worker.py``).
"""

from __future__ import annotations

import json
import sqlite3
import uuid

import httpx

from flue_cloudflare.devtools import LocalWorker
from workerd_support import entries, eventually

RUN_LIKE = "run_01JCF5RDXN3Q8ZP4MHW6T0ABCD"


def test_the_python_worker_answers_over_http(smoke: LocalWorker) -> None:
    response = httpx.get(smoke.url + "/", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_a_durable_object_named_by_a_run_id_keeps_rows_in_its_own_sqlite_file(smoke: LocalWorker) -> None:
    written = httpx.post(f"{smoke.url}/objects/{RUN_LIKE}/entries", content="first", timeout=30).json()
    assert written["seq"] >= 1
    assert [e["body"] for e in entries(smoke, f"/objects/{RUN_LIKE}/entries")][-1] == "first"
    # The object's database is a real SQLite file on the local disk, named by the object's id.
    database = smoke.storage / "smoke-Ledger" / f"{written['object_id']}.sqlite"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT body FROM entries WHERE seq = ?", (written["seq"],)).fetchall()
    assert rows == [("first",)]


def test_the_same_name_reaches_the_same_object_and_another_name_another(smoke: LocalWorker) -> None:
    first = httpx.get(f"{smoke.url}/objects/{RUN_LIKE}/entries", timeout=30).json()["object_id"]
    again = httpx.get(f"{smoke.url}/objects/{RUN_LIKE}/entries", timeout=30).json()["object_id"]
    other = httpx.get(f"{smoke.url}/objects/run_other/entries", timeout=30).json()["object_id"]
    assert first == again != other
    assert len(first) == 64


def test_an_alarm_set_by_the_object_fires_and_writes_to_its_storage(smoke: LocalWorker) -> None:
    name = f"run_alarm_{uuid.uuid4().hex}"
    set_at = httpx.post(f"{smoke.url}/objects/{name}/alarm?in=200", timeout=30).json()["at"]
    assert httpx.get(f"{smoke.url}/objects/{name}/alarm", timeout=30).json()["alarm"] == set_at
    fired = eventually(lambda: [e for e in entries(smoke, f"/objects/{name}/entries") if e["kind"] == "alarm"])
    assert fired[0]["at"] >= set_at
    # A fired alarm is cleared.
    assert httpx.get(f"{smoke.url}/objects/{name}/alarm", timeout=30).json()["alarm"] is None


def test_a_cron_trigger_fires_scheduled_through_workerds_cron_scheduler(smoke: LocalWorker) -> None:
    occurrence = smoke.fire_crons_soon()

    def recorded() -> list[dict[str, object]]:
        found = [json.loads(e["body"]) for e in entries(smoke, "/scheduled") if e["kind"] == "cron"]
        return [record for record in found if record["scheduledTime"] == occurrence]

    assert eventually(recorded) == [{"cron": "* * * * *", "scheduledTime": occurrence}]


def test_a_queue_message_reaches_the_queue_handler(smoke: LocalWorker) -> None:
    body = f"job-{uuid.uuid4().hex}"
    assert httpx.post(f"{smoke.url}/queue", content=body, timeout=30).status_code == 202

    def received() -> list[dict[str, object]]:
        found = [json.loads(e["body"]) for e in entries(smoke, "/queue")]
        return [record for record in found if record["body"] == body]

    assert eventually(received) == [{"queue": "jobs", "body": body, "attempts": 1}]


def test_flue_core_imports_and_runs_a_workflow_inside_the_worker(smoke: LocalWorker) -> None:
    probe = httpx.get(f"{smoke.url}/probe/flue", timeout=60).json()
    assert probe["status"] == "completed"
    assert probe["result"] == {"text": "hello workerd hello workerd"}
    assert probe["events"] == ["run_queued", "run_start", "step", "progress", "run_end"]
    assert probe["listed"] == [probe["run_id"]]
    assert probe["run_id"].startswith("run_")
    assert probe["invalid_input"] == "invalid_input"
    assert probe["pydantic"].startswith("2.")


def test_a_starlette_app_is_driven_from_the_workers_fetch(smoke: LocalWorker) -> None:
    response = httpx.post(f"{smoke.url}/probe/asgi/echo?x=1", content="body", timeout=60)
    assert response.status_code == 200
    assert response.json() == {"method": "POST", "path": "/probe/asgi/echo", "query": {"x": "1"}, "body": "body"}


def test_flues_http_surface_admits_a_run_inside_the_worker(smoke: LocalWorker) -> None:
    response = httpx.post(f"{smoke.url}/probe/http/workflows/greet?wait=result", json={"name": "http"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"text": "hello http"}


def test_flues_http_surface_answers_bad_input_with_the_typed_envelope_inside_the_worker(smoke: LocalWorker) -> None:
    response = httpx.post(f"{smoke.url}/probe/http/workflows/greet", json={"times": "many"}, timeout=60)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    unknown = httpx.post(f"{smoke.url}/probe/http/workflows/nope", json={}, timeout=60)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "workflow_not_found"

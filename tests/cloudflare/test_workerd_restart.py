"""What a Durable Object keeps when workerd dies: kill -9, then start on the same storage.

A write that was answered is durable (workerd's output gate holds a response until the storage
write under it is committed), and an alarm that came due while workerd was down runs after the
restart. One workerd for the module, killed and restarted by the tests in turn.
"""

from __future__ import annotations

import time
import uuid

import httpx

from flue_cloudflare.devtools import LocalWorker
from workerd_support import entries, eventually


def test_answered_writes_survive_kill_9_and_a_restart_on_the_same_storage(smoke: LocalWorker) -> None:
    name = f"run_{uuid.uuid4().hex}"
    for body in ("one", "two"):
        assert httpx.post(f"{smoke.url}/objects/{name}/entries", content=body, timeout=30).status_code == 200
    pid = smoke.workerd.pid
    smoke.kill()
    assert not smoke.workerd.running
    smoke.start()
    assert smoke.workerd.pid != pid
    assert [e["body"] for e in entries(smoke, f"/objects/{name}/entries")] == ["one", "two"]


def test_an_alarm_due_while_workerd_was_down_fires_after_the_restart(smoke: LocalWorker) -> None:
    name = f"run_{uuid.uuid4().hex}"
    at = httpx.post(f"{smoke.url}/objects/{name}/alarm?in=1000", timeout=30).json()["at"]
    smoke.kill()
    time.sleep(max(0.0, at / 1000 - time.time()) + 0.2)  # the alarm comes due while nothing runs
    restarted = time.time() * 1000
    smoke.start()
    fired = eventually(lambda: [e for e in entries(smoke, f"/objects/{name}/entries") if e["kind"] == "alarm"])
    assert len(fired) == 1
    assert fired[0]["at"] >= restarted

"""Bad input to every route of the Worker gets the same typed envelope as from a local app.

The same workflows and HTTP options (``workers/lifecycle_workflows.py``) are served by the runs
Worker on workerd and by a local app on uvicorn (memory store); each bad request goes to both, and
the answers must agree: status, error code, message and the names of the details.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser import served_in_background

from flue_cloudflare.devtools import LocalWorker
from flue_core import Runtime
from flue_core.http import create_app
from flue_node_like import LocalTarget, MemoryStore
from lifecycle_workflows import HTTP_OPTIONS, READER, WORKFLOWS

UNKNOWN_RUN = "run_01NOSUCHRUN0000000000000000"
JSON = {"content-type": "application/json"}

# (method, path, query, headers, body)
BAD_REQUESTS: list[tuple[str, str, dict[str, str], dict[str, str], bytes | None]] = [
    ("GET", "/workflows/greet", {}, {}, None),
    ("PUT", "/workflows/greet", {}, JSON, b"{}"),
    ("POST", "/workflows/greet", {"wait": "forever"}, JSON, b'{"name": "x"}'),
    ("POST", "/workflows/greet", {"other": "1"}, JSON, b'{"name": "x"}'),
    ("POST", "/workflows/nope", {}, JSON, b"{}"),
    ("POST", "/workflows/square", {}, JSON, b'{"n": 2}'),  # not exposed over HTTP
    ("POST", "/workflows/greet", {}, {"content-type": "text/plain"}, b"name"),
    ("POST", "/workflows/greet", {}, JSON, b'{"name": '),
    ("POST", "/workflows/greet", {}, JSON, b'{"name": NaN}'),
    ("POST", "/workflows/greet", {}, JSON, b"\xff\xfe"),
    ("POST", "/workflows/greet", {}, JSON, b'{"name": 3, "times": "many"}'),
    ("POST", "/workflows/greet", {}, JSON, b"[1, 2]"),
    ("POST", "/workflows/noop", {}, JSON, b'{"x": 1}'),
    ("POST", "/workflows/greet", {}, {**JSON, "idempotency-key": "k" * 300}, b'{"name": "x"}'),
    ("POST", "/workflows/greet", {}, JSON, b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
    ("GET", f"/runs/{UNKNOWN_RUN}", {}, READER, None),
    ("GET", f"/runs/{UNKNOWN_RUN}", {"meta": ""}, READER, None),
    ("HEAD", f"/runs/{UNKNOWN_RUN}", {}, READER, None),
    ("POST", f"/runs/{UNKNOWN_RUN}", {}, READER, b"{}"),
    ("DELETE", f"/runs/{UNKNOWN_RUN}", {}, READER, None),
    ("GET", f"/runs/{UNKNOWN_RUN}", {"offset": "nonsense"}, READER, None),
    ("GET", f"/runs/{UNKNOWN_RUN}", {"live": "sometimes"}, READER, None),
    ("POST", f"/runs/{UNKNOWN_RUN}/cancel", {}, READER, None),
    ("GET", f"/runs/{UNKNOWN_RUN}/cancel", {}, READER, None),
    ("POST", f"/runs/{UNKNOWN_RUN}/cancel", {"now": "1"}, READER, None),
    ("POST", f"/runs/{UNKNOWN_RUN}/signals/approval", {}, {**READER, **JSON}, b'{"approved": true, "by": "x"}'),
    ("GET", f"/runs/{UNKNOWN_RUN}/signals/approval", {}, READER, None),
    ("POST", f"/runs/{UNKNOWN_RUN}/signals/approval", {"now": "1"}, {**READER, **JSON}, b"{}"),
    ("GET", "/schedules", {}, {}, None),
    ("GET", "/schedules/nope", {}, READER, None),
    ("POST", "/schedules", {}, {**READER, **JSON}, b'{"name": "n", "workflow": "greet", "cron": "61 * * * *"}'),
    ("POST", "/schedules", {}, {**READER, **JSON}, b'{"name": "n", "workflow": "nope", "cron": "* * * * *"}'),
    ("POST", "/schedules", {}, {**READER, **JSON}, b'{"name": "n", "workflow": "greet", "cron": "* * * * *", "input": {"times": 2}}'),
    ("POST", "/schedules", {}, {**READER, **JSON}, b'{"name": "bad name!", "workflow": "greet", "cron": "* * * * *"}'),
    ("POST", "/schedules", {}, {**READER, **JSON}, b'{"name": "n", "workflow": "greet", "cron": "* * * * *", "timezone": "Mars/Olympus"}'),
    ("POST", "/schedules/nope/pause", {}, READER, None),
    ("DELETE", "/schedules/nope", {}, READER, None),
    ("GET", "/runs", {}, {}, None),
    ("GET", "/runs", {"limit": "0"}, READER, None),
    ("GET", "/runs", {"limit": "many"}, READER, None),
    ("GET", "/runs", {"status": "sleepy"}, READER, None),
    ("GET", "/runs", {"cursor": "not-a-cursor"}, READER, None),
    ("GET", "/runs", {"colour": "blue"}, READER, None),
    ("POST", "/runs", {}, READER, b"{}"),
    ("GET", "/nowhere", {}, {}, None),
]


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    runtime = Runtime(WORKFLOWS, target=LocalTarget(MemoryStore()), entry_points=False)
    with served_in_background(runtime, lambda rt: create_app(rt, **HTTP_OPTIONS)) as served:
        yield served.url


def answer(base: str, request: tuple[str, str, dict[str, str], dict[str, str], bytes | None]) -> dict[str, Any]:
    method, path, query, headers, body = request
    response = httpx.request(method, base + path, params=query, headers=headers, content=body, timeout=60)
    shape: dict[str, Any] = {"status": response.status_code, "allow": response.headers.get("allow")}
    if method != "HEAD":
        error = response.json()["error"]
        shape.update(code=error["code"], message=error["message"], details=sorted(error.get("details", {})))
    return shape


@pytest.mark.parametrize("request_", BAD_REQUESTS, ids=[f"{r[0]} {r[1][:40]} {r[2]}" for r in BAD_REQUESTS])
def test_a_bad_request_gets_the_same_envelope_as_locally(
    runs_worker: LocalWorker, local_url: str, request_: tuple[str, str, dict[str, str], dict[str, str], bytes | None]
) -> None:
    local = answer(local_url, request_)
    assert local["status"] >= 400
    assert answer(runs_worker.url, request_) == local

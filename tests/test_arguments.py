"""Every query parameter, cursor and run id is parsed strictly, over HTTP and in the Python API alike:
anything not fully understood is a typed 4xx error, never a 500 and never read as something else."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import anyio
import httpx
import pytest

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.cursors import encode_cursor
from flue_core.errors import InvalidCursor, InvalidQuery, RunNotFound
from flue_core.http import serve
from flue_core.streams.server import streams_app
from flue_node_like.streams_sqlite import SqliteStreamStore
from http_served import error_of, local_target, served

pytestmark = pytest.mark.anyio


@pytest.fixture
def make_target(tmp_path):
    # Parsing comes before any store is asked; SQLite is where a value that slipped through would
    # fail (binding text that is not valid Unicode), so that is the store these tests use.
    return lambda: local_target("sqlite", tmp_path)


@pytest.fixture
async def runtime(make_target):
    async with Runtime([done], target=make_target()) as opened:
        yield opened


@workflow(name="done", http=True)
async def done(ctx: RunContext) -> str:
    return "done"


def cursor_of(value: Any) -> str:
    """A cursor-shaped string (URL-safe base64 of JSON) that this listing never returned."""
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_LIMITS = ["--5", "-5", "+5", " 5", "5 ", "5\n", "\u0663", "1e3", "5.0", "0x10", "", "1" * 5000, "0", "1001"]

BAD_CURSORS = {
    "deep-json": cursor_of(deep(150)),
    "deeper-than-the-parser": cursor_of(deep(5000)),
    "surrogate-run-id": cursor_of(["2024-01-01T00:00:00.000Z", "\ud800"]),
    "three-items": cursor_of(["2024-01-01T00:00:00.000Z", "run_x", 1]),
    "not-a-timestamp": cursor_of(["yesterday", "run_x"]),
    "timestamp-without-zone": cursor_of(["2024-01-01T00:00:00.000", "run_x"]),
    "non-canonical-timestamp": cursor_of(["2024-01-01T00:00:00Z", "run_x"]),
    "run-id-with-a-slash": cursor_of(["2024-01-01T00:00:00.000Z", "run/x"]),
    "padded": cursor_of(["2024-01-01T00:00:00.000Z", "run_x"]) + "==",
    "not-base64": "!!!!",
    "empty": "",
    "numbers": cursor_of([1, 2]),
}


@pytest.mark.parametrize("limit", BAD_LIMITS)
async def test_a_malformed_limit_is_invalid_query_over_http(make_target, limit):
    async with served([done], make_target, list_runs_enabled=True, authorize_run_list=lambda request: True) as (_, client):
        response = await client.get("/runs", params={"limit": limit})
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_query"


@pytest.mark.parametrize("limit", [*BAD_LIMITS, True, 1.0, pytest.param(10**5000, id="huge"), None, [5]])
async def test_a_malformed_limit_is_invalid_query_in_the_python_api(runtime, limit):
    with pytest.raises(InvalidQuery):
        await runs.list(limit=limit, runtime=runtime)


@pytest.mark.parametrize("case", sorted(BAD_CURSORS))
async def test_a_cursor_this_listing_never_made_is_invalid_cursor_over_http(make_target, case):
    async with served([done], make_target, list_runs_enabled=True, authorize_run_list=lambda request: True) as (_, client):
        response = await client.get("/runs", params={"cursor": BAD_CURSORS[case]})
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_cursor"


@pytest.mark.parametrize("cursor", [*BAD_CURSORS.values(), 123, b"abc", ["x"]])
async def test_a_cursor_this_listing_never_made_is_invalid_cursor_in_the_python_api(runtime, cursor):
    with pytest.raises(InvalidCursor):
        await runs.list(cursor=cursor, runtime=runtime)


async def test_a_cursor_survives_its_round_trip_exactly(runtime):
    for _ in range(3):
        await workflows.start(done, runtime=runtime)
    page = await runs.list(limit=1, runtime=runtime)
    assert page.next_cursor == encode_cursor(page.runs[0])
    rest = await runs.list(limit=5, cursor=page.next_cursor, runtime=runtime)
    assert len(rest.runs) == 2


@pytest.mark.parametrize("value", ["\ud800", "a b", "", "x" * 129, 5, "/etc"])
async def test_a_workflow_filter_that_cannot_name_a_workflow_is_invalid_query(runtime, value):
    with pytest.raises(InvalidQuery):
        await runs.list(workflow=value, runtime=runtime)


@pytest.mark.parametrize("run_id", ["\ud800", "run\udcff", "", "x" * 129, "run/1", "run 1", 5, None])
async def test_an_id_that_cannot_name_a_run_is_not_found_in_the_python_api(runtime, run_id):
    assert await runs.get(run_id, runtime=runtime) is None
    with pytest.raises(RunNotFound):
        await runs.wait(run_id, runtime=runtime)
    with pytest.raises(RunNotFound):
        await runs.cancel(run_id, runtime=runtime)
    with pytest.raises(RunNotFound):
        [event async for event in runs.events(run_id, runtime=runtime)]


@pytest.mark.parametrize("path", ["/runs/%ED%A0%80", "/runs/%FF", "/runs/" + "x" * 300, "/runs/a%00b", "/runs/%F0%9F%98%80"])
async def test_an_id_that_cannot_name_a_run_is_404_over_http(make_target, path):
    async with served([done], make_target, authorize_run_read=lambda request, run: True) as (_, client):
        for query in ("?meta", ""):
            response = await client.get(path + query)
            assert response.status_code == 404
            assert error_of(response)["code"] == "run_not_found"


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1, "5", True])
async def test_a_wait_that_is_not_a_finite_number_of_seconds_is_invalid_query(runtime, timeout):
    receipt = await workflows.start(done, runtime=runtime)
    with pytest.raises(InvalidQuery):
        await runs.result(receipt.run_id, timeout=timeout, runtime=runtime)
    with pytest.raises(InvalidQuery):
        await runs.cancel(receipt.run_id, wait_for=timeout, runtime=runtime)


@pytest.mark.parametrize(
    "query",
    ["tail=--5", "tail=\u0661", "tail=" + "1" * 5000, "tail=1%0A", "offset=-1&live=long-poll&cursor=1e3",
     "offset=-1&live=long-poll&cursor=--1", "offset=-1&live=long-poll&cursor=\u0661",
     "offset=-1&live=long-poll&cursor=" + "1" * 30, "offset=-1&live=long-poll&cursor=-5"],
)
async def test_a_malformed_stream_read_parameter_is_invalid_query(make_target, query):
    async with served([done], make_target, authorize_run_read=lambda request, run: True) as (runtime, client):
        receipt = await workflows.start(done, runtime=runtime)
        with anyio.fail_after(5):
            await runs.wait(receipt.run_id, runtime=runtime)
        response = await client.get(f"/runs/{receipt.run_id}?{query}")
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_query"


@pytest.mark.parametrize(
    ("header", "value"),
    [("stream-ttl", "1" * 5000), ("stream-ttl", "1" * 19), ("producer-epoch", "1" * 5000), ("producer-seq", "9" * 17)],
)
async def test_a_stream_header_number_too_long_to_mean_anything_is_400(tmp_path, header, value):
    store = SqliteStreamStore(tmp_path / "streams.db")
    app = streams_app(store, open_store=False)
    headers = {"content-type": "text/plain", header: value}
    if header.startswith("producer"):
        headers = {"producer-id": "p", "producer-epoch": "0", "producer-seq": "0", **headers}
    async with app.state.streams, serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.put("/s", headers=headers, content=b"x")
        if header.startswith("producer"):
            response = await client.post("/s", headers=headers, content=b"y")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_stream_request"

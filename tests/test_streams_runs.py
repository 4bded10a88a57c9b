"""Run event streams over the Durable Streams read protocol, end to end: uvicorn on 127.0.0.1, httpx as
the client (httpx-sse for SSE), on the memory and SQLite stores."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import EventSource
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.http import serve
from flue_core.offsets import format_offset
from flue_core.streams import ReadOptions, serve_run_stream
from flue_core.testing.base import GATES, gates
from flue_node_like import LocalTarget, MemoryStore, RedisStore, SqliteStore

pytestmark = pytest.mark.anyio



class Ticks(BaseModel):
    count: int = 3
    gate: str | None = None


@workflow(name="stream-ticks")
async def ticks(ctx: RunContext, input: Ticks) -> int:
    """Emits ``count`` ticks; with a gate, waits on it and then emits one ``released`` event."""
    for n in range(input.count):
        ctx.emit("tick", {"n": n})
    if input.gate is not None:
        await GATES[input.gate].wait()
        ctx.emit("released", {"gate": input.gate})
    return input.count


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "redis":
        return RedisStore(request.getfixturevalue("redis_url"))
    return MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "flue.db")


@pytest.fixture
def gate() -> Any:
    with gates() as make:
        yield make


@asynccontextmanager
async def stream_server(store: Any, options: ReadOptions | None = None) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A runtime over ``store`` and a minimal app serving ``serve_run_stream`` at ``/runs/{run_id}``."""
    runtime = Runtime([ticks], target=LocalTarget(store, shutdown_grace=0.2, sweep_interval=0.1), entry_points=False)

    async def endpoint(request: Request) -> Response:
        return await serve_run_stream(request, runtime, request.path_params["run_id"], options)

    app = Starlette(routes=[Route("/runs/{run_id}", endpoint, methods=["GET", "HEAD"])])
    async with runtime, serve(app, timeout_graceful_shutdown=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield runtime, client


async def finished_run(runtime: Runtime, count: int = 3) -> str:
    receipt = await workflows.start(ticks, input={"count": count}, runtime=runtime)
    await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
    return receipt.run_id


async def started_run(runtime: Runtime, gate: str, count: int = 1) -> str:
    """A running run that has stored its ticks and waits on ``gate``."""
    receipt = await workflows.start(ticks, input={"count": count, "gate": gate}, runtime=runtime)
    # Closed here, not later by the event loop, so its watch of the run is gone when this returns.
    with anyio.fail_after(5):
        async with aclosing(runs.events(receipt.run_id, follow=True, runtime=runtime)) as events:
            async for event in events:
                if event.type == "tick" and event.data["n"] == count - 1:
                    break
    await runtime.target.store.flush()
    return receipt.run_id


async def stored_json(runtime: Runtime, run_id: str) -> list[str]:
    page = await runtime.target.store.read(run_id, -1, 1000)
    assert page is not None
    return [event.json for event in page.events]


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events of ``response`` as ``(event, data)``, read by an SSE client (httpx-sse)."""
    async for sse in EventSource(response).aiter_sse():
        yield sse.event, sse.data


# -- catch-up ----------------------------------------------------------------------------------------


async def test_catch_up_returns_the_stored_events_as_a_json_array(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"offset": "-1"})
        stored = await stored_json(runtime, run_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == ("[" + ",".join(stored) + "]").encode()  # served as stored, not re-encoded
    assert [event["type"] for event in response.json()] == ["run_queued", "run_start", "tick", "tick", "tick", "run_end"]
    assert response.headers["stream-next-offset"] == format_offset(len(stored) - 1)
    assert response.headers["stream-up-to-date"] == "true"
    assert response.headers["stream-closed"] == "true"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_read_without_offset_starts_at_the_beginning(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        without = await client.get(f"/runs/{run_id}")
        start = await client.get(f"/runs/{run_id}", params={"offset": "-1"})
    assert without.content == start.content


async def test_read_resumes_strictly_after_the_given_offset(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"offset": format_offset(2)})
    assert [event["index"] for event in response.json()] == [3, 4, 5]


async def test_read_at_the_tail_of_a_closed_run_is_empty_and_signals_the_end(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"offset": format_offset(5)})
    assert response.json() == []
    assert response.headers["stream-next-offset"] == format_offset(5)
    assert response.headers["stream-closed"] == "true"
    assert response.headers["stream-up-to-date"] == "true"


async def test_offset_now_returns_an_empty_array_and_the_tail_offset(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await started_run(runtime, gate())
        response = await client.get(f"/runs/{run_id}", params={"offset": "now"})
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["stream-next-offset"] == format_offset(2)  # run_queued, run_start, tick
    assert response.headers["stream-up-to-date"] == "true"
    assert "stream-closed" not in response.headers
    assert "etag" not in response.headers
    assert response.headers["cache-control"] == "no-store"


async def test_tail_returns_only_the_last_events(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"tail": "2"})
    assert [event["type"] for event in response.json()] == ["tick", "run_end"]


async def test_a_long_stream_is_read_in_chunks_until_up_to_date(store: Any) -> None:
    async with stream_server(store, ReadOptions(chunk_limit=4)) as (runtime, client):
        run_id = await finished_run(runtime, count=10)
        first = await client.get(f"/runs/{run_id}", params={"offset": "-1"})
        indexes, offset, pages = [], "-1", 0
        while True:
            response = await client.get(f"/runs/{run_id}", params={"offset": offset})
            indexes += [event["index"] for event in response.json()]
            offset, pages = response.headers["stream-next-offset"], pages + 1
            if response.headers.get("stream-up-to-date") == "true":
                break
    assert len(first.json()) == 4
    assert "stream-up-to-date" not in first.headers and "stream-closed" not in first.headers
    assert indexes == list(range(13)) and pages == 4


async def test_matching_if_none_match_returns_304_without_a_body(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        first = await client.get(f"/runs/{run_id}")
        again = await client.get(f"/runs/{run_id}", headers={"if-none-match": first.headers["etag"]})
        other = await client.get(f"/runs/{run_id}", headers={"if-none-match": '"something-else"'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert other.status_code == 200 and other.content == first.content


async def test_etag_changes_when_the_run_ends_without_new_data_for_the_reader(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        name = gate()
        run_id = await started_run(runtime, name)
        tail = (await client.get(f"/runs/{run_id}", params={"offset": "now"})).headers["stream-next-offset"]
        before = await client.get(f"/runs/{run_id}", params={"offset": tail})
        GATES[name].set()
        await runs.wait(run_id, timeout=5, runtime=runtime)
        end = (await client.get(f"/runs/{run_id}", params={"offset": "now"})).headers["stream-next-offset"]
        after = await client.get(f"/runs/{run_id}", params={"offset": end})
    assert "stream-closed" not in before.headers and after.headers["stream-closed"] == "true"
    assert before.headers["etag"] != after.headers["etag"]
    assert after.headers["etag"].endswith(':c"')


# -- HEAD and unknown runs ---------------------------------------------------------------------------


async def test_head_returns_the_tail_and_closure_without_a_body(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        running = await started_run(runtime, gate())
        finished = await finished_run(runtime)
        open_head = await client.head(f"/runs/{running}")
        closed_head = await client.head(f"/runs/{finished}")
    assert open_head.status_code == 200 and open_head.content == b""
    assert open_head.headers["stream-next-offset"] == format_offset(2)
    assert "stream-closed" not in open_head.headers
    assert open_head.headers["cache-control"] == "no-store"
    assert open_head.headers["content-type"] == "application/json"
    assert closed_head.headers["stream-next-offset"] == format_offset(5)
    assert closed_head.headers["stream-closed"] == "true"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_an_unknown_run_is_404_run_not_found(store: Any, method: str) -> None:
    async with stream_server(store) as (_, client):
        response = await client.request(method, "/runs/run_01JUNKNOWN0000000000000000")
    assert response.status_code == 404
    if method == "GET":
        assert response.json()["error"]["code"] == "run_not_found"


# -- bad requests ------------------------------------------------------------------------------------


BAD_QUERIES = [
    ("offset=-1&offset=now", "invalid_query"),
    ("tail=2&tail=3", "invalid_query"),
    ("offset=-1&live=sse&live=sse", "invalid_query"),
    ("offset=-1&live=long-poll&cursor=1&cursor=2", "invalid_query"),
    ("offset=", "invalid_offset"),
    ("offset=abc", "invalid_offset"),
    ("offset=0000000000000000_0000000000000001%0A", "invalid_offset"),
    ("offset=1_2%20", "invalid_offset"),
    ("offset=0,1", "invalid_offset"),
    ("offset=..%2F1_1", "invalid_offset"),
    ("offset=0000000000000000_0000000000000099", "invalid_offset"),  # beyond the end of the stream
    ("live=long-poll", "invalid_query"),
    ("live=sse", "invalid_query"),
    ("offset=-1&live=poll", "invalid_query"),
    ("tail=0", "invalid_query"),
    ("tail=-1", "invalid_query"),
    ("tail=x", "invalid_query"),
    ("offset=-1&live=long-poll&cursor=abc", "invalid_query"),
]


@pytest.mark.parametrize(("query", "code"), BAD_QUERIES)
async def test_a_malformed_or_repeated_parameter_is_400(store: Any, query: str, code: str) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unknown_parameters_are_ignored(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"offset": "-1", "foo": "bar"})
    assert response.status_code == 200


# -- long-poll ---------------------------------------------------------------------------------------


async def test_long_poll_is_woken_by_an_event_appended_from_another_task(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        name = gate()
        run_id = await started_run(runtime, name)
        tail = format_offset(2)
        opened_at: list[float] = []

        async def release() -> None:
            await anyio.sleep(0.3)
            opened_at.append(time.monotonic())
            GATES[name].set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(release)
            response = await client.get(f"/runs/{run_id}", params={"offset": tail, "live": "long-poll"})
        answered = time.monotonic()
    assert response.status_code == 200
    assert response.json()[0]["type"] == "released"
    assert response.headers["stream-next-offset"] > tail
    assert response.headers["stream-cursor"].isdigit()
    assert answered - opened_at[0] < 0.5  # woken by the append (a re-read would come 0.7 s later)


async def test_long_poll_returns_data_already_after_the_offset_at_once(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        response = await client.get(f"/runs/{run_id}", params={"offset": "-1", "live": "long-poll"})
    assert response.status_code == 200
    assert len(response.json()) == 6
    assert response.headers["stream-cursor"].isdigit()


async def test_long_poll_without_new_data_answers_204_after_the_timeout(store: Any, gate: Any) -> None:
    async with stream_server(store, ReadOptions(long_poll_timeout=0.3)) as (runtime, client):
        run_id = await started_run(runtime, gate())
        started = time.monotonic()
        response = await client.get(f"/runs/{run_id}", params={"offset": "now", "live": "long-poll"})
        elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert response.headers["stream-next-offset"] == format_offset(2)
    assert response.headers["stream-up-to-date"] == "true"
    assert response.headers["stream-cursor"].isdigit()
    assert "stream-closed" not in response.headers
    assert 0.3 <= elapsed < 2


async def test_long_poll_at_the_end_of_a_closed_run_answers_204_at_once(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        started = time.monotonic()
        response = await client.get(f"/runs/{run_id}", params={"offset": format_offset(5), "live": "long-poll"})
        elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert response.headers["stream-closed"] == "true"
    assert response.headers["stream-up-to-date"] == "true"
    assert elapsed < 1


async def test_an_echoed_cursor_comes_back_strictly_greater(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        first = await client.get(f"/runs/{run_id}", params={"offset": "-1", "live": "long-poll"})
        cursor = first.headers["stream-cursor"]
        second = await client.get(f"/runs/{run_id}", params={"offset": "-1", "live": "long-poll", "cursor": cursor})
    assert int(second.headers["stream-cursor"]) > int(cursor)


def watchers(runtime: Runtime, run_id: str) -> int:
    """How many readers wait on the run's notifications."""
    return len(runtime.changes._watches.get(run_id, ()))


async def until(condition: Any, within: float) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_client_that_leaves_a_long_poll_frees_the_wait(store: Any, gate: Any) -> None:
    async with stream_server(store, ReadOptions(long_poll_timeout=30)) as (runtime, client):
        run_id = await started_run(runtime, gate())
        assert watchers(runtime, run_id) == 0
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(client.get, f"/runs/{run_id}", params={"offset": "now", "live": "long-poll"}))
            await until(lambda: watchers(runtime, run_id) == 1, within=2)  # the long-poll is waiting
            tasks.cancel_scope.cancel()  # the client hangs up
        # Freed as soon as the server sees the disconnect: long before the timeout or a re-read.
        await until(lambda: watchers(runtime, run_id) == 0, within=0.5)


# -- SSE ---------------------------------------------------------------------------------------------


async def test_sse_sends_history_then_live_events_then_ends_when_the_run_closes(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        name = gate()
        run_id = await started_run(runtime, name, count=2)
        frames: list[tuple[str, Any]] = []
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": "-1", "live": "sse"}) as response:
            assert response.headers["content-type"] == "text/event-stream"
            assert "stream-sse-data-encoding" not in response.headers
            async for event, data in sse_events(response):
                frames.append((event, json.loads(data)))
                if event == "control" and frames[-1][1].get("upToDate") and not GATES[name].is_set():
                    GATES[name].set()
    data_frames = [payload for event, payload in frames if event == "data"]
    types = [e["type"] for payload in data_frames for e in payload]
    assert types == ["run_queued", "run_start", "tick", "tick", "released", "run_end"]
    assert all(frames[i + 1][0] == "control" for i, (event, _) in enumerate(frames) if event == "data")
    last = frames[-1][1]
    assert last["streamClosed"] is True and "streamCursor" not in last
    assert last["streamNextOffset"] == format_offset(len(types) - 1)


async def test_sse_controls_carry_cursor_and_up_to_date_while_the_run_is_open(store: Any, gate: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await started_run(runtime, gate())
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": "now", "live": "sse"}) as response:
            async for event, data in sse_events(response):
                control = json.loads(data)
                break
    assert event == "control"
    assert control == {"streamNextOffset": format_offset(2), "streamCursor": control["streamCursor"], "upToDate": True}


async def test_sse_at_the_end_of_a_closed_run_sends_one_closing_control(store: Any) -> None:
    async with stream_server(store) as (runtime, client):
        run_id = await finished_run(runtime)
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": format_offset(5), "live": "sse"}) as response:
            frames = [(event, json.loads(data)) async for event, data in sse_events(response)]
    assert frames == [("control", {"streamNextOffset": format_offset(5), "streamClosed": True, "upToDate": True})]


async def test_sse_of_an_unknown_run_is_a_404_not_a_stream(store: Any) -> None:
    async with stream_server(store) as (_, client):
        response = await client.get("/runs/run_01JUNKNOWN0000000000000000", params={"offset": "-1", "live": "sse"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


async def test_idle_sse_connections_get_heartbeats(store: Any, gate: Any) -> None:
    async with stream_server(store, ReadOptions(sse_heartbeat=0.1)) as (runtime, client):
        run_id = await started_run(runtime, gate())
        lines: list[str] = []
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": "now", "live": "sse"}) as response:
            async for line in response.aiter_lines():
                lines.append(line)
                if line.startswith(":"):
                    break
    assert lines[-1] == ": heartbeat"


async def test_sse_connections_end_after_the_maximum_duration(store: Any, gate: Any) -> None:
    async with stream_server(store, ReadOptions(sse_max_duration=0.3)) as (runtime, client):
        run_id = await started_run(runtime, gate())
        started = time.monotonic()
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": "now", "live": "sse"}) as response:
            frames = [event async for event, _ in sse_events(response)]
    assert frames == ["control"]
    assert time.monotonic() - started < 2


# -- disconnect and resume ---------------------------------------------------------------------------


async def test_a_reader_that_disconnects_resumes_from_its_last_offset_without_loss_or_duplicates(
    store: Any, gate: Any
) -> None:
    async with stream_server(store) as (runtime, client):
        name = gate()
        run_id = await started_run(runtime, name, count=3)
        seen: list[int] = []
        offset = "-1"
        # First connection: take the first chunk, remember its offset, hang up mid-stream.
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": offset, "live": "sse"}) as response:
            async for event, data in sse_events(response):
                if event == "data":
                    seen += [e["index"] for e in json.loads(data)]
                else:
                    offset = json.loads(data)["streamNextOffset"]
                    break
        GATES[name].set()  # the run goes on while nobody reads
        await runs.wait(run_id, timeout=5, runtime=runtime)
        # Second connection: resume from the last offset received.
        async with client.stream("GET", f"/runs/{run_id}", params={"offset": offset, "live": "sse"}) as response:
            async for event, data in sse_events(response):
                if event == "data":
                    seen += [e["index"] for e in json.loads(data)]
        stored = await stored_json(runtime, run_id)
    assert seen == list(range(len(stored)))


async def test_long_poll_readers_resume_without_loss_or_duplicates(store: Any, gate: Any) -> None:
    async with stream_server(store, ReadOptions(long_poll_timeout=0.2)) as (runtime, client):
        name = gate()
        run_id = await started_run(runtime, name, count=2)
        seen: list[int] = []
        offset = "-1"
        while True:
            response = await client.get(f"/runs/{run_id}", params={"offset": offset, "live": "long-poll"})
            if response.status_code == 200:
                seen += [e["index"] for e in response.json()]
            offset = response.headers["stream-next-offset"]
            if response.headers.get("stream-closed") == "true":
                break
            GATES[name].set()
    assert seen == list(range(len(seen))) and len(seen) == 6

"""Run streams read as Server-Sent Events by a real SSE client (httpx-sse), end to end: the HTTP app
served by uvicorn on 127.0.0.1 over SQLite, ``GET /runs/{id}?offset=...&live=sse``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from cli_support import served
from flue_core import Runtime, runs, workflows
from flue_core.offsets import format_offset
from flue_core.streams import ReadOptions

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def sse(url: str, run_id: str, offset: str = "-1") -> AsyncIterator[EventSource]:
    """An open ``live=sse`` read of the run's stream after ``offset``."""
    async with httpx.AsyncClient(timeout=10) as client, aconnect_sse(
        client, "GET", f"{url}/runs/{run_id}", params={"offset": offset, "live": "sse"}
    ) as source:
        assert source.response.status_code == 200
        yield source


async def waiting_run(runtime: Runtime, gate: Path) -> str:
    """The id of a run started on ``gate`` that has emitted ``waiting`` (a catch-up read holds three
    events; the rest come once the gate file exists)."""
    receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
    async for event in runs.events(receipt.run_id, follow=True, runtime=runtime):
        if event.type == "waiting":
            break
    return receipt.run_id


async def stored(runtime: Runtime, run_id: str) -> list[dict[str, Any]]:
    return [event.model_dump(mode="json") async for event in runs.events(run_id, runtime=runtime)]


def events_of(frames: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [event for frame in frames if frame.event == "data" for event in frame.json()]


async def test_catch_up_then_live_events_arrive_in_order_each_once(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        run_id = await waiting_run(runtime, gate)
        frames: list[ServerSentEvent] = []
        caught_up: list[dict[str, Any]] = []
        async with sse(url, run_id) as source:
            with anyio.fail_after(10):
                async for frame in source.aiter_sse():
                    frames.append(frame)
                    if frame.event == "control" and frame.json().get("upToDate") and not caught_up:
                        caught_up = events_of(frames)
                        gate.touch()  # from here on, events reach the open connection live
        every = await stored(runtime, run_id)
    assert [event["type"] for event in caught_up] == ["run_queued", "run_start", "waiting"]
    assert events_of(frames) == every
    assert [event["type"] for event in every] == ["run_queued", "run_start", "waiting", "released", "run_end"]


async def test_each_data_frame_is_followed_by_a_control_frame_with_the_next_offset(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        run_id = await waiting_run(runtime, gate)
        frames: list[ServerSentEvent] = []
        async with sse(url, run_id) as source:
            with anyio.fail_after(10):
                async for frame in source.aiter_sse():
                    frames.append(frame)
                    gate.touch()
    pairs = list(zip(frames, frames[1:]))
    assert frames[0].event == "data"
    assert all(second.event == "control" for first, second in pairs if first.event == "data")
    for data, control in ((a, b) for a, b in pairs if a.event == "data"):
        assert control.json()["streamNextOffset"] == format_offset(data.json()[-1]["index"])
    assert all("streamCursor" in frame.json() for frame in frames[:-1] if frame.event == "control")


async def test_the_response_ends_after_the_control_frame_that_closes_the_stream(tmp_path):
    never = ReadOptions(sse_max_duration=None)  # only the stream's end may end the response
    async with served(tmp_path, stream_options=never) as (runtime, url):
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        async with sse(url, receipt.run_id) as source:
            with anyio.fail_after(5):
                frames = [frame async for frame in source.aiter_sse()]
    *_, end, last = frames
    assert end.event == "data" and end.json()[-1]["type"] == "run_end"
    assert last.event == "control"
    assert last.json() == {"streamNextOffset": format_offset(end.json()[-1]["index"]), "streamClosed": True, "upToDate": True}


async def test_a_reader_resumes_from_the_last_stream_next_offset_without_loss_or_duplicates(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        run_id = await waiting_run(runtime, gate)
        before: list[ServerSentEvent] = []
        async with sse(url, run_id) as source:
            async for frame in source.aiter_sse():
                before.append(frame)
                if frame.event == "control" and frame.json().get("upToDate"):
                    break  # the reader goes away
        gate.touch()  # events appended while nobody reads
        await runs.wait(run_id, timeout=5, runtime=runtime)
        resume_at = before[-1].json()["streamNextOffset"]
        async with sse(url, run_id, offset=resume_at) as source:
            with anyio.fail_after(5):
                after = [frame async for frame in source.aiter_sse()]
        every = await stored(runtime, run_id)
    assert [event["type"] for event in events_of(after)] == ["released", "run_end"]
    assert events_of(before) + events_of(after) == every


async def test_a_connection_the_server_ends_is_resumed_from_its_last_control_frame(tmp_path):
    gate = tmp_path / "gate"
    short = ReadOptions(sse_max_duration=0.3)  # servers end SSE responses now and then, for caches
    async with served(tmp_path, stream_options=short) as (runtime, url):
        run_id = await waiting_run(runtime, gate)
        offset, events, connections, closed = "-1", [], 0, False
        with anyio.fail_after(10):
            while not closed:
                connections += 1
                async with sse(url, run_id, offset=offset) as source:
                    async for frame in source.aiter_sse():
                        if frame.event == "data":
                            events.extend(frame.json())
                        else:
                            offset, closed = frame.json()["streamNextOffset"], frame.json().get("streamClosed", False)
                if connections == 2:
                    gate.touch()
        every = await stored(runtime, run_id)
    assert events == every
    assert connections >= 3


async def test_line_separators_inside_event_data_reach_the_reader_intact(tmp_path):
    name = "a\u2028b\u2029c\u0085d\x0be"  # line breaks to str.splitlines(), not to SSE
    async with served(tmp_path) as (runtime, url):
        receipt = await workflows.start("cli-greet", input={"name": name}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        async with sse(url, receipt.run_id) as source:
            events = events_of([frame async for frame in source.aiter_sse()])
    assert [event["data"] for event in events if event["type"] == "greeted"] == [{"name": name}]

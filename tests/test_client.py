"""``FlueClient`` against a real server: uvicorn on 127.0.0.1 serving ``create_app``, over SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from cli_support import cutting_proxy, served
from flue_core import InputNotSerializable, InvalidInput, Runtime, RunNotFound, WorkflowNotFound, runs, workflows
from flue_core.client import FlueClient, ServerUnreachable, UnexpectedResponse
from flue_core.errors import ConfigurationError, FlueError, IdempotencyKeyConflict
from flue_core.http import serve
from flue_core.http.errors import InternalError, MethodNotAllowed
from flue_core.models import Event
from flue_core.streams import ReadOptions

pytestmark = pytest.mark.anyio


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


async def stored(runtime: Runtime, run_id: str) -> list[Event]:
    return await collect(runs.events(run_id, runtime=runtime))


async def follow_gated(client: FlueClient, runtime: Runtime, gate: Path, live: str) -> tuple[str, list[Event]]:
    """``(run_id, events)`` of a gated run followed from its start; the gate opens once the run waits,
    so the events after ``waiting`` arrive on a live read."""
    receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
    seen = []
    async for event in client.events(receipt.run_id, follow=True, live=live):
        seen.append(event)
        if event.type == "waiting":
            gate.touch()
    return receipt.run_id, seen


# -- start and get ------------------------------------------------------------------------------------


async def test_start_returns_the_receipt_of_an_admitted_run(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await client.start("cli-greet", {"name": "ada"})
        record = await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
    assert receipt.workflow == "cli-greet" and receipt.stream_url == f"/runs/{receipt.run_id}"
    assert record.input == {"name": "ada", "steps": 2} and record.status == "completed"


async def test_start_with_a_key_is_idempotent(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        first = await client.start("cli-greet", {"name": "ada"}, key="once")
        again = await client.start("cli-greet", {"name": "ada"}, key="once")
        with pytest.raises(IdempotencyKeyConflict):
            await client.start("cli-greet", {"name": "bob"}, key="once")
    assert first.run_id == again.run_id


async def test_start_with_invalid_input_raises_invalid_input_with_the_problems(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        with pytest.raises(InvalidInput) as caught:
            await client.start("cli-greet", {"nom": "ada"})
        assert (await runs.list(runtime=runtime)).runs == []
    assert caught.value.status == 422 and caught.value.code == "invalid_input"
    assert caught.value.details["errors"][0]["loc"] == ["name"]


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [{"name": "\ud800"}, {"name": "ada", "x": float("nan")}, {"x": [float("inf")]}, {"d": nested_lists(500)}],
    ids=["surrogate", "nan", "infinity", "too-deep"],
)
async def test_start_with_input_json_cannot_carry_raises_input_not_serializable_before_sending(tmp_path, value):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        with pytest.raises(InputNotSerializable):
            await client.start("cli-greet", value)
        assert (await runs.list(runtime=runtime)).runs == []


async def test_start_of_an_unknown_workflow_raises_workflow_not_found(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        with pytest.raises(WorkflowNotFound):
            await client.start("no-such-workflow")


async def test_get_returns_the_run_record(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        assert await client.get(receipt.run_id) == await runs.get(receipt.run_id, runtime=runtime)


async def test_a_run_the_server_does_not_let_us_read_is_not_found(tmp_path):
    async with served(tmp_path, authorize_run_read=None) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        with pytest.raises(RunNotFound):
            await client.get(receipt.run_id)
        with pytest.raises(RunNotFound):
            await collect(client.events(receipt.run_id))


async def test_list_returns_a_page_of_the_servers_runs(tmp_path):
    async with served(tmp_path, list_runs_enabled=True, authorize_run_list=lambda request: True) as (runtime, url):
        ids = [(await workflows.start("cli-fail", runtime=runtime)).run_id for _ in range(3)]
        async with FlueClient(url) as client:
            first = await client.list(limit=2)
            second = await client.list(limit=2, cursor=first.next_cursor)
            failed = await client.list(workflow="cli-fail")
    assert [r.run_id for r in first.runs + second.runs] == ids[::-1]
    assert second.next_cursor is None and len(failed.runs) == 3


# -- reading and following events ---------------------------------------------------------------------


async def test_events_without_follow_returns_every_event_there_is_and_stops(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        assert await collect(client.events(receipt.run_id)) == await stored(runtime, receipt.run_id)


async def test_catch_up_reads_page_after_page_until_up_to_date(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-chatty", input={"n": 2500}, runtime=runtime)  # pages hold 1000
        await runs.wait(receipt.run_id, timeout=10, runtime=runtime)
        events = await collect(client.events(receipt.run_id))
    assert [e.index for e in events] == list(range(2503))
    assert events[-1].type == "run_end"


async def test_events_after_an_offset_are_those_strictly_after_it(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        every = await stored(runtime, receipt.run_id)
        assert await collect(client.events(receipt.run_id, offset=every[3].offset)) == every[4:]


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_follow_waits_for_new_events_and_ends_with_run_end(tmp_path, live):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        run_id, seen = await follow_gated(client, runtime, gate, live)
        assert seen == await stored(runtime, run_id)
    assert [e.type for e in seen] == ["run_queued", "run_start", "waiting", "released", "run_end"]


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_follow_from_now_sees_only_new_events(tmp_path, live):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        async for event in runs.events(receipt.run_id, follow=True, runtime=runtime):
            if event.type == "waiting":
                break

        async def release_soon() -> None:
            await anyio.sleep(0.3)
            gate.touch()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(release_soon)
            seen = await collect(client.events(receipt.run_id, offset="now", follow=True, live=live))
    assert [e.type for e in seen] == ["released", "run_end"]


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_a_dropped_connection_is_resumed_from_the_last_offset_without_loss_or_duplicates(tmp_path, live):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url), cutting_proxy(url) as (proxy_url, proxy):
        async with FlueClient(proxy_url, retry_for=10) as client:
            receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
            cut = []

            async def cut_then_release() -> None:
                await anyio.sleep(0.3)  # the client is now waiting on a live read
                cut.append(proxy.cut())
                gate.touch()  # events appended while the client is away

            seen = []
            async with anyio.create_task_group() as tasks:
                async for event in client.events(receipt.run_id, follow=True, live=live):
                    seen.append(event)
                    if event.type == "waiting":
                        tasks.start_soon(cut_then_release)
            assert seen == await stored(runtime, receipt.run_id)
    assert cut == [1] and proxy.accepted >= 2


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_line_separators_inside_event_data_are_followed_intact(tmp_path, live):
    gate = tmp_path / "gate \u2028\u2029\u0085\x0b\x0c\x1c"  # line breaks to str.splitlines(), not to SSE
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        run_id, seen = await follow_gated(client, runtime, gate, live)
    assert [event.data for event in seen if event.type == "released"] == [{"path": str(gate)}]


async def test_an_sse_follow_goes_on_across_responses_the_server_ends(tmp_path):
    gate = tmp_path / "gate"
    short = ReadOptions(sse_max_duration=0.2)  # servers end SSE responses now and then, for caches
    async with served(tmp_path, stream_options=short) as (runtime, url), FlueClient(url, retry_for=1) as client:
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        seen = []
        with anyio.fail_after(10):
            async for event in client.events(receipt.run_id, follow=True, live="sse"):
                seen.append(event)
                if event.type == "waiting":
                    await anyio.sleep(0.5)  # the response being read ends meanwhile
                    gate.touch()
        assert seen == await stored(runtime, receipt.run_id)


async def test_a_server_that_cannot_be_reached_fails_at_once(tmp_path):
    async with served(tmp_path) as (runtime, url):
        pass  # the port is free again: nothing listens there
    async with FlueClient(url, retry_for=30) as client:
        with anyio.fail_after(5), pytest.raises(ServerUnreachable) as caught:
            await collect(client.events("run_x", follow=True))
    assert caught.value.code == "server_unreachable"


async def test_a_server_that_stays_away_ends_the_follow_after_retry_for(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url), cutting_proxy(url) as (proxy_url, proxy):
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        async with FlueClient(proxy_url, retry_for=0.5) as client:
            with anyio.fail_after(10), pytest.raises(ServerUnreachable):
                async for event in client.events(receipt.run_id, follow=True):
                    if event.type == "waiting":
                        proxy.upstream_port = 9  # every new connection now fails: the server is gone
                        proxy.cut()
        gate.touch()


# -- headers and errors -------------------------------------------------------------------------------


async def test_headers_given_as_a_callable_are_resolved_for_every_request(tmp_path):
    calls = []

    def headers() -> dict[str, str]:
        calls.append(1)
        return {"x-reader": "yes"}

    def grant_with_header(request: Any, run: Any) -> bool:
        return request.headers.get("x-reader") == "yes"

    async with served(tmp_path, authorize_run_read=grant_with_header) as (runtime, url):
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        async with FlueClient(url) as anonymous:
            with pytest.raises(RunNotFound):
                await anonymous.get(receipt.run_id)
        async with FlueClient(url, headers=headers) as client:
            await client.get(receipt.run_id)
            await collect(client.events(receipt.run_id, follow=True))
    assert len(calls) >= 2


async def test_a_token_is_sent_as_a_bearer_authorization(tmp_path):
    def grant_bearer(request: Any, run: Any) -> bool:
        return request.headers.get("authorization") == "Bearer s3cret"

    async with served(tmp_path, authorize_run_read=grant_bearer) as (runtime, url):
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        async with FlueClient(url, token="s3cret") as client:
            assert (await client.get(receipt.run_id)).run_id == receipt.run_id


async def test_an_error_code_the_client_does_not_know_keeps_its_code_and_status(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(url) as client:
        with pytest.raises(FlueError) as caught:
            await client.list()  # the listing is off: the route does not exist
    assert caught.value.code == "route_not_found" and caught.value.status == 404


async def test_a_server_that_is_not_flue_raises_unexpected_response():
    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse("<html>hello</html>")

    app = Starlette(routes=[Route("/runs/{run_id}", page)])
    async with serve(app) as url, FlueClient(url) as client:
        with pytest.raises(UnexpectedResponse):
            await collect(client.events("run_x"))


async def test_a_405_from_the_server_raises_method_not_allowed_with_the_servers_status(tmp_path):
    async with served(tmp_path) as (runtime, url), FlueClient(f"{url}/workflows") as client:
        with pytest.raises(MethodNotAllowed) as caught:
            await client.list()  # GET /workflows/runs: the workflow route only takes POST
    assert caught.value.code == "method_not_allowed" and caught.value.status == 405
    assert caught.value.details == {"method": "GET", "allow": "POST"}


async def test_a_500_from_the_server_raises_internal_error_with_the_servers_status(tmp_path):
    def broken_policy(request: Any, run: Any) -> bool:
        raise RuntimeError("the policy broke")

    async with served(tmp_path, authorize_run_read=broken_policy) as (runtime, url), FlueClient(url) as client:
        receipt = await workflows.start("cli-greet", input={"name": "ada"}, runtime=runtime)
        with pytest.raises(InternalError) as caught:
            await client.get(receipt.run_id)
    assert caught.value.code == "internal_error" and caught.value.status == 500
    assert caught.value.message == "An internal error occurred."


@pytest.mark.parametrize("base_url", ["ftp://example.com", "example.com/flue", ""])
def test_a_base_url_that_is_not_http_raises_a_configuration_error(base_url):
    with pytest.raises(ConfigurationError) as caught:
        FlueClient(base_url)
    assert caught.value.code == "invalid_base_url" and caught.value.details == {"base_url": base_url}


async def test_an_unknown_live_mode_raises_a_configuration_error(tmp_path):
    async with FlueClient("http://127.0.0.1:9") as client:  # refused before any request is sent
        with pytest.raises(ConfigurationError) as caught:
            await collect(client.events("run_x", follow=True, live="websocket"))
    assert caught.value.code == "invalid_live_mode" and caught.value.details == {"live": "websocket"}

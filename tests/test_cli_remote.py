"""The ``flue`` command against a server: ``--url`` to uvicorn on 127.0.0.1, and ``flue serve`` itself."""

from __future__ import annotations

import json
import signal
import socket
import time

import anyio
import httpx
import pytest

from cli_support import flue_async, flue_env, flue_running, served
from flue_core import runs, workflows
from flue_core.cli.exits import Exit, reworded
from flue_core.http.errors import MethodNotAllowed

pytestmark = pytest.mark.anyio


def grant_reader_header(request, run) -> bool:
    return request.headers.get("x-reader") == "yes"


async def test_start_on_a_server_follows_its_events_as_ndjson(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-greet", "--input", '{"name": "ada"}', "--url", url, "-f")
        lines = result.json_lines()
        events = [e async for e in runs.events(lines[0]["runId"], runtime=runtime)]
    assert result.code == Exit.COMPLETED, result.stderr
    assert lines == [{**e.model_dump(mode="json"), "offset": e.offset} for e in events]


async def test_start_on_a_server_waits_and_exits_with_the_runs_outcome(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-fail", "--url", url)
    assert result.code == Exit.FAILED
    assert [receipt["workflow"] for receipt in result.json_lines()] == ["cli-fail"]


async def test_start_detach_returns_once_the_server_admitted_the_run(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(
            tmp_path, "start", "cli-gated", "--input", json.dumps({"path": str(gate)}), "--url", url, "--detach"
        )
        [receipt] = result.json_lines()
        record = await runs.get(receipt["runId"], runtime=runtime)
        gate.touch()
    assert result.code == Exit.COMPLETED
    assert not record.finished


async def test_start_with_invalid_input_on_a_server_exits_65(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-greet", "--input", "{}", "--url", url)
    assert result.code == Exit.REJECTED
    assert "flue: invalid_input:" in result.stderr and "name: Field required" in result.stderr


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_logs_follow_on_a_server_follows_a_run_still_going(tmp_path, live):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        async with flue_running(tmp_path, "logs", receipt.run_id, "-f", "--url", url, "--live", live) as running:
            while (await running.json_line())["type"] != "waiting":
                pass
            gate.touch()
            await running.rest()
            assert await running.exit_code() == Exit.COMPLETED
    assert [json.loads(line)["type"] for line in running.lines] == [
        "run_queued", "run_start", "waiting", "released", "run_end",
    ]


async def test_logs_sends_the_given_headers_to_the_server(tmp_path):
    async with served(tmp_path, authorize_run_read=grant_reader_header) as (runtime, url):
        receipt = await workflows.start("cli-fail", runtime=runtime)
        await runs.wait(receipt.run_id, timeout=5, runtime=runtime)
        refused = await flue_async(tmp_path, "logs", receipt.run_id, "--url", url)
        granted = await flue_async(tmp_path, "logs", receipt.run_id, "--url", url, "-H", "X-Reader: yes")
    assert refused.code == Exit.NOT_FOUND and "flue: run_not_found:" in refused.stderr
    assert granted.code == Exit.FAILED and granted.json_lines()[-1]["type"] == "run_end"


async def test_flue_token_is_sent_as_a_bearer_token(tmp_path):
    def grant_bearer(request, run) -> bool:
        return request.headers.get("authorization") == "Bearer s3cret"

    async with served(tmp_path, authorize_run_read=grant_bearer) as (runtime, url):
        receipt = await workflows.start("cli-fail", runtime=runtime)
        result = await flue_async(tmp_path, "logs", receipt.run_id, "-f", env=flue_env(tmp_path, FLUE_URL=url, FLUE_TOKEN="s3cret"))
    assert result.code == Exit.FAILED


async def test_runs_on_a_server_lists_its_runs(tmp_path):
    async with served(tmp_path, list_runs_enabled=True, authorize_run_list=lambda request: True) as (runtime, url):
        ids = [(await workflows.start("cli-fail", runtime=runtime)).run_id for _ in range(2)]
        result = await flue_async(tmp_path, "runs", "--url", url, "--workflow", "cli-fail")
    assert [record["runId"] for record in result.json_lines()] == ids[::-1]


async def test_a_server_that_cannot_be_reached_exits_69_at_once(tmp_path):
    started = time.monotonic()
    result = await flue_async(tmp_path, "logs", "run_x", "-f", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.code == Exit.UNAVAILABLE
    assert result.stderr.startswith("flue: server_unreachable: Cannot reach http://127.0.0.1:")
    assert time.monotonic() - started < 10


async def test_ctrl_c_stops_following_a_server_and_the_run_goes_on(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        async with flue_running(
            tmp_path, "start", "cli-gated", "--input", json.dumps({"path": str(gate)}), "--url", url, "-f"
        ) as running:
            while (line := await running.json_line())["type"] != "waiting":
                pass
            running.process.send_signal(signal.SIGINT)
            assert await running.exit_code() == Exit.INTERRUPTED
        record = await runs.get(line["runId"], runtime=runtime)
        gate.touch()
    assert not record.finished


# -- flue serve ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_serving(url: str) -> None:
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(20):
            while True:
                try:
                    await client.get(f"{url}/runs")
                    return
                except httpx.TransportError:
                    await anyio.sleep(0.05)


async def test_serve_serves_the_app_until_interrupted_and_the_cli_talks_to_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with flue_running(tmp_path, "serve", "cli_app:app", "--port", str(port), "--log-level", "warning") as server:
        await wait_until_serving(url)
        started = await flue_async(tmp_path, "start", "cli-greet", "--input", '{"name": "ada"}', "--url", url, "-f")
        listed = await flue_async(tmp_path, "runs", "--url", url)
        server.process.send_signal(signal.SIGINT)
        assert await server.exit_code() == Exit.COMPLETED
    assert started.code == Exit.COMPLETED, started.stderr
    assert started.json_lines()[-1]["data"]["result"] == {"greeting": "hello ada"}
    assert [r["runId"] for r in listed.json_lines()] == [started.json_lines()[0]["runId"]]
    assert (tmp_path / "flue.db").exists()  # the served app's runtime used FLUE_STORE


async def test_serve_with_an_app_that_cannot_be_imported_exits_78(tmp_path):
    result = await flue_async(tmp_path, "serve", "no_such_module:app", "--port", str(free_port()))
    assert result.code == Exit.CONFIG
    assert "flue: app_not_loaded:" in result.stderr


async def test_serve_on_a_port_in_use_exits_69(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = await flue_async(tmp_path, "serve", "cli_app:app", "--port", str(busy.getsockname()[1]))
    assert result.code == Exit.UNAVAILABLE


async def test_start_on_a_server_that_hides_the_run_says_it_was_admitted(tmp_path):
    async with served(tmp_path, authorize_run_read=None) as (runtime, url):
        result = await flue_async(tmp_path, "start", "cli-fail", "--url", url)
    [receipt] = result.json_lines()
    assert result.code == Exit.NOT_FOUND
    assert f"flue: run_not_found: Run {receipt['runId']} was admitted, but the server does not let" in result.stderr


async def test_runs_on_a_server_without_a_listing_says_so(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "runs", "--url", url)
    assert result.code == Exit.NOT_FOUND
    assert "flue: route_not_found: " in result.stderr and "list_runs_enabled=True" in result.stderr


async def test_a_405_from_the_server_is_reported_with_its_code(tmp_path):
    async with served(tmp_path) as (runtime, url):
        result = await flue_async(tmp_path, "runs", "--url", f"{url}/workflows")  # GET /workflows/runs
    assert result.code == Exit.REJECTED, result.stderr
    assert result.stderr.startswith("flue: method_not_allowed: Method GET is not allowed here; use POST.")


def test_reworded_keeps_the_class_code_status_and_details_of_any_error():
    error = reworded(MethodNotAllowed("GET", ["POST"]), "Say more.")
    assert type(error) is MethodNotAllowed and error.message == "Say more." and str(error) == "Say more."
    assert (error.code, error.status, error.details) == ("method_not_allowed", 405, {"method": "GET", "allow": "POST"})


async def test_dashboard_serves_the_stores_runs_to_its_link_until_interrupted(tmp_path):
    started = await flue_async(tmp_path, "start", "cli-greet", "--app", "cli_app", "--input", '{"name": "ada"}')
    run_id = started.json_lines()[0]["runId"]
    async with flue_running(tmp_path, "dashboard", "--port", str(free_port())) as dashboard:
        link = (await dashboard.line()).strip()
        base = link.split("/dashboard/")[0]
        async with httpx.AsyncClient() as browser, httpx.AsyncClient() as stranger:
            opened = await browser.get(link, follow_redirects=True)
            assert opened.status_code == 200 and str(opened.url) == f"{base}/dashboard/"  # the token is gone
            assert [run["runId"] for run in (await browser.get(f"{base}/runs")).json()["runs"]] == [run_id]
            assert (await browser.get(f"{base}/dashboard/runs/{run_id}")).status_code == 200
            assert (await stranger.get(f"{base}/dashboard/")).status_code == 404
            assert (await stranger.get(f"{base}/runs/{run_id}?meta")).status_code == 404
        dashboard.process.send_signal(signal.SIGINT)
        assert await dashboard.exit_code() == Exit.COMPLETED


async def test_dashboard_on_a_port_in_use_exits_69(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = await flue_async(tmp_path, "dashboard", "--port", str(busy.getsockname()[1]))
    assert result.code == Exit.UNAVAILABLE
    assert result.stderr.startswith("flue: cannot_serve: Cannot serve the dashboard on 127.0.0.1:")


async def test_serve_names_the_dashboard_of_an_app_that_has_one(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with flue_running(tmp_path, "serve", "cli_app:app_with_dashboard", "--port", str(port)) as server:
        await wait_until_serving(url)
        server.process.send_signal(signal.SIGINT)
        assert await server.exit_code() == Exit.COMPLETED
        stderr = await server.stderr()
    assert f"flue: dashboard at {url}/dashboard/" in stderr


async def test_dashboard_with_an_app_that_cannot_be_imported_exits_78(tmp_path):
    result = await flue_async(tmp_path, "dashboard", "no_such_module", "--port", str(free_port()))
    assert result.code == Exit.CONFIG
    assert "flue: app_not_loaded:" in result.stderr


async def test_cancel_on_a_server_cancels_the_run(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path, authorize_run_cancel=lambda request, run: True) as (runtime, url):
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        result = await flue_async(tmp_path, "cancel", receipt.run_id, "--url", url, "--format", "text")
        record = await runs.get(receipt.run_id, runtime=runtime)
    assert result.code == Exit.COMPLETED, result.stderr
    assert result.stdout.startswith(receipt.run_id) and "cancelled" in result.stdout
    assert record is not None and record.status == "cancelled"


async def test_cancel_on_a_server_that_does_not_grant_it_exits_65_and_the_run_goes_on(tmp_path):
    gate = tmp_path / "gate"
    async with served(tmp_path) as (runtime, url):
        receipt = await workflows.start("cli-gated", input={"path": str(gate)}, runtime=runtime)
        result = await flue_async(tmp_path, "cancel", receipt.run_id, "--url", url)
        record = await runs.get(receipt.run_id, runtime=runtime)
        gate.touch()
    assert result.code == Exit.REJECTED
    assert result.stderr.startswith("flue: run_cancel_denied: ")
    assert record is not None and record.status == "running"

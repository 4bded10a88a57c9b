"""The dashboard in a real headless Chromium (Debian's, driven by selenium) against the app served by
uvicorn on 127.0.0.1: runs appear and follow their runs live, a run's timeline fills in from its SSE
stream and ends, filters, paging, cancel, re-run, and a browser without a grant sees nothing.

One browser for the module; every test has its own app on a fresh SQLite file. The browser's grant
is the ``viewer=ops`` cookie the apps' authorizers look for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browser import Served, chromium, grant, ops_only, served_in_background, wait_for
from flue_core import RunContext, Runtime, runs, workflow
from flue_core.http import create_app
from flue_core.streams import ReadOptions

GATES: dict[str, anyio.Event] = {}


async def count_rows() -> int:
    await anyio.sleep(0.02)
    return 42


@workflow(name="report", http=True)
async def report(ctx: RunContext, input: dict) -> dict:
    """Logs, a step, progress half-way; then waits for its gate (when it has one) and finishes."""
    ctx.log.info("counting rows", table="orders")
    rows = await ctx.step("count", count_rows)
    ctx.progress(1, 2, message="counted")
    if "gate" in input:
        await GATES[input["gate"]].wait()
    ctx.emit("rows.counted", {"rows": rows})
    ctx.progress(2, 2, message="done")
    return {"rows": rows}


@workflow(name="cleanup", http=True)
async def cleanup(ctx: RunContext, input: dict) -> None:
    if input.get("fail"):
        raise RuntimeError("disk full")


@workflow(name="approval", http=True)
async def approval(ctx: RunContext, input: dict) -> dict:
    return await ctx.wait_for_signal("decision")


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@contextmanager
def dashboard_app(tmp_path: Path, driver: WebDriver, **options: Any) -> Iterator[Served]:
    """The app, with the dashboard granted (reads, listing, actions) to the ``viewer=ops`` cookie."""
    runtime = Runtime([report, cleanup, approval], store=f"sqlite:///{tmp_path}/flue.db", adopt=False)
    grants = {
        "authorize_run_read": ops_only,
        "authorize_run_list": ops_only,
        "authorize_run_cancel": ops_only,
        "authorize_run_signal": ops_only,
        "authorize_run_rerun": ops_only,
    }
    with served_in_background(runtime, lambda rt: create_app(rt, dashboard=True, **grants, **options)) as served:
        try:
            yield served
        finally:
            for gate in GATES.values():
                served.call(gate.set)
            GATES.clear()
            driver.delete_all_cookies()


@pytest.fixture
def served(tmp_path: Path, driver: WebDriver) -> Iterator[Served]:
    with dashboard_app(tmp_path, driver) as served:
        yield served


def gate(served: Served) -> str:
    name = f"gate-{len(GATES)}"
    GATES[name] = served.event()
    return name


def start_over_http(served: Served, workflow_name: str, input: dict) -> str:
    response = httpx.post(f"{served.url}/workflows/{workflow_name}", json=input)
    assert response.status_code == 202, response.text
    return response.json()["runId"]


def finish(served: Served, run_id: str) -> None:
    served.call(runs.wait, run_id, timeout=10, runtime=served.runtime)


def rows(driver: WebDriver) -> list[tuple[str, str, str]]:
    """The runs table as ``(run id, workflow, status)``, read in one go (rows are replaced as they change)."""
    return [
        tuple(row)
        for row in driver.execute_script(
            "return [...document.querySelectorAll('#rows tr')].map(tr => [tr.dataset.runId,"
            " tr.querySelector('.c-workflow').textContent, tr.dataset.status])"
        )
    ]


def timeline(driver: WebDriver) -> list[tuple[int, str]]:
    return [
        (int(index), kind)
        for index, kind in driver.execute_script(
            "return [...document.querySelectorAll('#timeline li')].map(li => [li.dataset.index, li.dataset.type])"
        )
    ]


def text(driver: WebDriver, selector: str) -> str:
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.textContent : null", selector)


# -- the runs page ------------------------------------------------------------------------------------


def test_a_run_started_over_http_appears_on_the_runs_page_and_its_row_follows_it(driver, served):
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/")
    wait_for(driver, lambda d: "No runs yet" in (text(d, "#empty") or ""), message="the empty listing")
    opened = gate(served)
    run_id = start_over_http(served, "report", {"gate": opened})
    wait_for(driver, lambda d: rows(d) == [(run_id, "report", "running")], message="the new run's row")
    served.call(GATES[opened].set)
    wait_for(driver, lambda d: rows(d) == [(run_id, "report", "completed")], message="the row follows the run")
    assert text(driver, f'tr[data-run-id="{run_id}"] .c-outcome') == '{"rows":42}'


def test_the_runs_page_filters_by_status_and_by_workflow(driver, served):
    done = [start_over_http(served, "report", {}), start_over_http(served, "cleanup", {})]
    failed = start_over_http(served, "cleanup", {"fail": True})
    for run_id in [*done, failed]:
        finish(served, run_id)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/")
    wait_for(driver, lambda d: len(rows(d)) == 3)
    driver.find_element(By.CSS_SELECTOR, '#statuses [data-status="failed"]').click()
    wait_for(driver, lambda d: rows(d) == [(failed, "cleanup", "failed")], message="only the failed run")
    assert parse_qs(urlsplit(driver.current_url).query) == {"status": ["failed"]}
    driver.find_element(By.CSS_SELECTOR, '#statuses [data-status=""]').click()
    driver.find_element(By.ID, "workflow").send_keys("report")
    wait_for(driver, lambda d: rows(d) == [(done[0], "report", "completed")], message="only the report run")
    driver.refresh()  # the filters are in the address
    wait_for(driver, lambda d: rows(d) == [(done[0], "report", "completed")], message="filters kept on reload")


def test_the_runs_page_pages_with_the_listing_cursor(driver, served):
    ids = [start_over_http(served, "cleanup", {}) for _ in range(5)]
    for run_id in ids:
        finish(served, run_id)
    newest_first = ids[::-1]
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/?limit=2")

    def shown(d: WebDriver) -> list[str]:
        return [run_id for run_id, _, _ in rows(d)]

    wait_for(driver, lambda d: shown(d) == newest_first[:2], message="page 1")
    driver.find_element(By.ID, "older").click()
    wait_for(driver, lambda d: shown(d) == newest_first[2:4], message="page 2")
    driver.find_element(By.ID, "older").click()
    wait_for(driver, lambda d: shown(d) == newest_first[4:], message="page 3")
    assert not driver.find_element(By.ID, "older").is_enabled()
    driver.find_element(By.ID, "newer").click()
    wait_for(driver, lambda d: shown(d) == newest_first[2:4], message="back to page 2")
    driver.back()
    wait_for(driver, lambda d: shown(d) == newest_first[4:], message="the browser's back button")


# -- a run's page -------------------------------------------------------------------------------------


def test_the_run_page_timeline_fills_in_live_from_the_stream_and_ends(driver, served):
    opened = gate(served)
    run_id = start_over_http(served, "report", {"gate": opened})
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: [kind for _, kind in timeline(d)] == ["run_queued", "run_start", "log", "step", "progress"])
    assert text(driver, "#progress-text") == "1 / 2 (50%)"
    assert text(driver, "#status") == "Running"
    assert text(driver, '#steps li[data-name="count"] .step-time').endswith("ms")
    served.call(GATES[opened].set)
    wait_for(driver, lambda d: timeline(d)[-1:] == [(7, "run_end")], message="the run's end")
    kinds = ["run_queued", "run_start", "log", "step", "progress", "rows.counted", "progress", "run_end"]
    assert timeline(driver) == list(enumerate(kinds))  # every event once, in order
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the record's status")
    assert text(driver, "#progress-text") == "2 / 2 (100%)"
    assert '"rows": 42' in text(driver, "#outcome")
    assert driver.find_element(By.ID, "live").get_attribute("data-state") == "ended"
    assert not driver.find_elements(By.ID, "cancel")  # nothing left to cancel


def test_a_failed_runs_page_shows_its_error(driver, served):
    run_id = start_over_http(served, "cleanup", {"fail": True})
    finish(served, run_id)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: text(d, "#status") == "Failed", message="the failed record")
    assert text(driver, "#outcome-title") == "Error"
    assert text(driver, "#outcome .error-code") == "workflow_error"
    assert text(driver, "#outcome .error-message") == "disk full"
    wait_for(driver, lambda d: timeline(d)[-1:] == [(2, "run_end")])
    assert text(driver, '#timeline li[data-type="run_end"] .event-body').endswith(" · disk full")


def test_the_timeline_resumes_where_it_was_when_the_server_ends_the_sse_response(driver, tmp_path):
    sse_reads = []

    class CountSseReads:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if b"live=sse" in scope.get("query_string", b""):
                sse_reads.append(scope["query_string"].decode())
            await self.app(scope, receive, send)

    short = ReadOptions(sse_max_duration=0.3, chunk_limit=2)  # responses end at once; two events per chunk
    with dashboard_app(tmp_path, driver, stream_options=short, middleware=[Middleware(CountSseReads)]) as served:
        opened = gate(served)
        run_id = start_over_http(served, "report", {"gate": opened})
        grant(driver, served)
        driver.get(f"{served.url}/dashboard/runs/{run_id}")
        wait_for(driver, lambda d: len(sse_reads) >= 3, message="reconnections")
        served.call(GATES[opened].set)
        wait_for(driver, lambda d: timeline(d)[-1:] == [(7, "run_end")], message="the run's end")
        assert [index for index, _ in timeline(driver)] == list(range(8))  # nothing lost, nothing twice
        assert all("offset=-1" not in read for read in sse_reads[1:])  # resumed from an offset


def test_cancel_from_the_run_page_cancels_the_run(driver, served):
    run_id = start_over_http(served, "report", {"gate": gate(served)})
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: text(d, "#progress-text") == "1 / 2 (50%)", message="the run half-way")
    driver.find_element(By.ID, "cancel").click()
    driver.find_element(By.ID, "cancel-confirm").click()
    wait_for(driver, lambda d: text(d, "#status") == "Cancelled", message="the cancelled record")
    wait_for(driver, lambda d: timeline(d)[-1][1] == "run_end")
    assert "Cancelled" in text(driver, '#timeline li[data-type="run_end"]')
    assert served.call(runs.get, run_id, runtime=served.runtime).status == "cancelled"


def test_rerun_from_the_run_page_opens_the_new_run_which_takes_over_the_stored_step(driver, served):
    opened = gate(served)
    run_id = start_over_http(served, "report", {"gate": opened})
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: text(d, "#status") == "Running", message="the running record")
    assert not driver.find_elements(By.ID, "rerun")  # only a finished run can be re-run
    served.call(GATES[opened].set)
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the completed record")
    driver.find_element(By.ID, "rerun").click()
    wait_for(driver, lambda d: d.current_url.rsplit("/", 1)[-1] != run_id, message="the new run's page")
    new_id = driver.current_url.rsplit("/", 1)[-1]
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the re-run completed")
    assert text(driver, "#rerun-of") == run_id and text(driver, "#recoveries") == "0"
    assert driver.find_element(By.CSS_SELECTOR, '#steps li[data-name="count"]').get_attribute("class") == "step replayed"
    record = served.call(runs.get, new_id, runtime=served.runtime)
    assert record.rerun_of == run_id and record.result == {"rows": 42}
    driver.find_element(By.ID, "rerun-of").click()
    wait_for(driver, lambda d: d.current_url.endswith(f"/runs/{run_id}"), message="back on the old run")


def test_rerun_from_a_step_runs_that_step_again(driver, served):
    run_id = start_over_http(served, "report", {})
    finish(served, run_id)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "rerun-from"), message="the re-run form")
    driver.find_element(By.ID, "rerun-from").send_keys("count")
    driver.find_element(By.ID, "rerun").click()
    wait_for(driver, lambda d: d.current_url.rsplit("/", 1)[-1] != run_id, message="the new run's page")
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the re-run completed")
    assert driver.find_element(By.CSS_SELECTOR, '#steps li[data-name="count"]').get_attribute("class") == "step"


def test_a_signal_sent_from_the_run_page_resumes_the_waiting_run(driver, served):
    run_id = start_over_http(served, "approval", {})
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    wait_for(driver, lambda d: text(d, "#status") == "Waiting", message="the waiting record")
    assert "signal decision" in text(driver, "#details")
    assert driver.find_element(By.ID, "signal-name").get_attribute("value") == "decision"
    driver.find_element(By.ID, "signal-data").send_keys('{"approved": true}')
    driver.find_element(By.ID, "signal-send").click()
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the run resumed and completed")
    types = [kind for _, kind in timeline(driver)]
    assert "signal_received" in types and "signal_delivered" in types and types[-1] == "run_end"
    assert served.call(runs.result, run_id, runtime=served.runtime) == {"approved": True}


# -- who sees what ------------------------------------------------------------------------------------


def test_a_browser_without_a_grant_sees_nothing(driver, served):
    run_id = start_over_http(served, "report", {})
    finish(served, run_id)
    unknown = "run_00000000000000000000000000"

    def seen(path: str) -> str:
        driver.get(served.url + path)
        assert not driver.find_elements(By.ID, "rows") and not driver.find_elements(By.ID, "timeline")
        return driver.find_element(By.TAG_NAME, "body").text

    for path in ["/dashboard/", "/runs"]:
        assert '"code":"route_not_found"' in seen(path) and "report" not in seen(path)
    for path in ["/dashboard/runs/{}", "/runs/{}?meta"]:
        refused = seen(path.format(run_id)).replace(run_id, "ID")
        assert refused == seen(path.format(unknown)).replace(unknown, "ID")  # as if there were no such run
        assert "report" not in refused


def test_a_page_of_another_site_cannot_cancel_through_the_browser(driver, served):
    run_id = start_over_http(served, "report", {"gate": gate(served)})
    target = f"{served.url}/dashboard/runs/{run_id}/cancel"

    async def forged(request: Request) -> HTMLResponse:
        return HTMLResponse(f'<form method="post" action="{target}"><button id="go">Win a prize</button></form>')

    grant(driver, served)  # the browser holds the grant, and sends it along with the forged form
    other_site = Runtime([], store="memory://")
    with served_in_background(other_site, lambda rt: Starlette(routes=[Route("/", forged)])) as attacker:
        driver.get(attacker.url)
        driver.find_element(By.ID, "go").click()
        wait_for(driver, lambda d: "cross_site_request" in d.find_element(By.TAG_NAME, "body").text)
    record = served.call(runs.get, run_id, runtime=served.runtime)
    assert record.status == "running" and record.cancel_requested is False

"""The run page's signal form in a real headless Chromium: data the workflow's declared model refuses
is not sent, and the toast names each problem (field and message), not only how many there are.

The app grants reading and signalling but not the listing, so the page also shows a run to a viewer
who has no runs page to go back to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser import Served, chromium, grant, ops_only, served_in_background, wait_for
from flue_core import RunContext, Runtime, runs, workflow
from flue_core.http import create_app
from flue_core.testing.base import wait_for_status


class Decision(BaseModel):
    approved: bool
    by: str


@workflow(name="toast-approval", http=True, signals={"decision": Decision})
async def approval(ctx: RunContext, input: dict) -> dict:
    decision = await ctx.wait_for_signal("decision")
    return {"approved": decision.approved}


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    runtime = Runtime([approval], store=f"sqlite:///{tmp_path}/flue.db", adopt=False)
    grants = {"authorize_run_read": ops_only, "authorize_run_signal": ops_only}
    with served_in_background(runtime, lambda rt: create_app(rt, dashboard=True, **grants)) as served:
        yield served


def open_waiting_run(driver: WebDriver, served: Served) -> str:
    response = httpx.post(f"{served.url}/workflows/toast-approval", json={})
    run_id = response.json()["runId"]
    served.call(wait_for_status, served.runtime, run_id, "waiting")
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{run_id}")
    return run_id


def text(driver: WebDriver, selector: str) -> str | None:
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.textContent : null", selector)


def test_a_run_page_without_the_listing_grant_shows_the_run_and_no_way_back_to_the_runs(driver, served):
    open_waiting_run(driver, served)
    wait_for(driver, lambda d: text(d, "#status") == "Waiting", message="the record rendered")
    assert "signal decision" in text(driver, "#details")
    assert text(driver, "#workflow-name") == "toast-approval"
    assert driver.find_elements(By.ID, "back") == [] and text(driver, "#crumbs").startswith("Run")
    assert not driver.find_element(By.ID, "toast").is_displayed()


def test_signal_data_the_model_refuses_is_not_sent_and_the_toast_names_each_problem(driver, served):
    run_id = open_waiting_run(driver, served)
    wait_for(driver, lambda d: d.find_element(By.ID, "signal-name").get_attribute("value") == "decision", message="the form")
    driver.find_element(By.ID, "signal-data").send_keys('{"approved": "perhaps"}')
    driver.find_element(By.ID, "signal-send").click()
    toast = wait_for(driver, lambda d: d.find_element(By.ID, "toast").is_displayed() and d.find_element(By.ID, "toast").text)
    assert "2 problem(s)" in toast
    assert "approved: Input should be a valid boolean" in toast
    assert "by: Field required" in toast
    assert served.call(runs.get, run_id, runtime=served.runtime).status == "waiting"

"""The dashboard's schedules page in a real headless Chromium (Debian's, driven by selenium) against the
app served by uvicorn on 127.0.0.1: each schedule's cron, zone, state, next ticks and last runs (linked
to their run pages), pause and resume with a toast, the top bar's link to it, and a browser without
the schedules grant sees nothing of it.

One browser for the module; every test has its own app on a fresh SQLite file. The browser's grant is
the ``viewer=ops`` cookie the apps' authorizers look for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser import Served, chromium, grant, ops_only, served_in_background, wait_for
from flue_core import RunContext, Runtime, runs, schedules, workflow
from flue_core.http import create_app
from flue_core.scheduler import tick


@workflow(name="digest", http=True)
async def digest(ctx: RunContext, input: dict) -> dict:
    return {"sent": True}


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@contextmanager
def schedules_app(tmp_path: Path, driver: WebDriver, **grants: Any) -> Iterator[Served]:
    runtime = Runtime([digest], store=f"sqlite:///{tmp_path}/flue.db", adopt=False)
    options = {"authorize_run_read": ops_only, "authorize_run_list": ops_only, "authorize_schedules": ops_only, **grants}
    make = lambda rt: create_app(rt, dashboard=True, schedules_enabled=True, **options)  # noqa: E731
    with served_in_background(runtime, make) as served:
        try:
            yield served
        finally:
            driver.delete_all_cookies()


@pytest.fixture
def served(tmp_path: Path, driver: WebDriver) -> Iterator[Served]:
    with schedules_app(tmp_path, driver) as served:
        yield served


async def caught_up(runtime: Runtime) -> list[str]:
    """An hourly schedule that every process missed for three hours, caught up (catchup 2): its runs."""
    made = await schedules.create("hourly", digest, "0 * * * *", input={}, catchup=2, runtime=runtime)
    await tick(runtime, made, made.created_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3, minutes=30))
    started = await schedules.last_runs("hourly", runtime=runtime)
    for record in started:
        await runs.wait(record.run_id, timeout=10, runtime=runtime)
    return [record.run_id for record in started]


def table(driver: WebDriver) -> list[dict[str, Any]]:
    """The schedules as the page shows them, read in one go (rows are replaced as they change)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#rows tr')].map(tr => ({"
        " name: tr.dataset.schedule, paused: tr.dataset.paused,"
        " cron: tr.querySelector('.c-cron').innerText, state: tr.querySelector('.c-state').innerText,"
        " ticks: [...tr.querySelectorAll('.c-ticks time')].map(t => t.getAttribute('datetime')),"
        " ticksText: tr.querySelector('.c-ticks').innerText,"
        " runs: [...tr.querySelectorAll('.c-last a')].map(a => [a.closest('li').dataset.runId, a.getAttribute('href'), a.className]),"
        " action: tr.querySelector('.c-actions button').innerText}))"
    )


def iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_page_lists_each_schedule_with_its_next_ticks_and_last_runs(driver, served):
    started = served.call(caught_up, served.runtime)
    served.call(schedules.create, "nightly", digest, "0 2 * * *", input={}, timezone="Europe/Berlin", runtime=served.runtime)
    hourly_ticks = [iso(t) for t in served.call(schedules.next_ticks, "hourly", runtime=served.runtime)]
    nightly_ticks = [iso(t) for t in served.call(schedules.next_ticks, "nightly", runtime=served.runtime)]
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/schedules")
    wait_for(driver, lambda d: len(table(d)) == 2, message="both schedules")
    hourly, nightly = table(driver)
    assert hourly["name"] == "hourly" and hourly["cron"].split("\n") == ["0 * * * *", "UTC"]
    assert hourly["state"] == "Active" and hourly["action"] == "Pause"
    assert hourly["ticks"] == hourly_ticks
    assert [run_id for run_id, _, _ in hourly["runs"]] == started and len(started) == 2
    assert all(href == f"/dashboard/runs/{run_id}" and "status-completed" in cls for run_id, href, cls in hourly["runs"])
    assert nightly["cron"].split("\n") == ["0 2 * * *", "Europe/Berlin"] and nightly["ticks"] == nightly_ticks
    assert "none yet" in driver.find_element(By.CSS_SELECTOR, '#rows tr[data-schedule="nightly"] .c-last').text
    assert driver.find_element(By.ID, "summary").text.startswith("2 schedules")
    driver.find_element(By.CSS_SELECTOR, f'#rows a[href$="{started[0]}"]').click()
    wait_for(driver, lambda d: d.current_url.endswith(f"/dashboard/runs/{started[0]}"), message="the run's page")
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "Completed", message="the run's record")


def test_pause_and_resume_from_the_page_change_the_schedule_and_say_so(driver, served):
    served.call(schedules.create, "nightly", digest, "0 2 * * *", input={}, runtime=served.runtime)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/schedules")
    wait_for(driver, lambda d: [row["action"] for row in table(d)] == ["Pause"], message="an active schedule")
    before = table(driver)[0]["ticks"]
    driver.find_element(By.CSS_SELECTOR, '#rows button[data-action="pause"]').click()
    wait_for(driver, lambda d: d.find_element(By.ID, "toast").is_displayed(), message="the toast")
    assert driver.find_element(By.ID, "toast").text.startswith("Paused nightly")
    wait_for(driver, lambda d: table(d)[0]["paused"] == "true", message="the paused row")
    paused = table(driver)[0]
    assert paused["state"] == "Paused" and paused["action"] == "Resume"
    assert paused["ticks"] == before and "would run at" in paused["ticksText"]  # still shows what it would do
    assert served.call(schedules.get, "nightly", runtime=served.runtime).paused is True
    driver.find_element(By.CSS_SELECTOR, '#rows button[data-action="resume"]').click()
    wait_for(driver, lambda d: table(d)[0]["paused"] == "false", message="the resumed row")
    assert driver.find_element(By.ID, "toast").text.startswith("Resumed nightly")
    assert served.call(schedules.get, "nightly", runtime=served.runtime).paused is False


def test_the_top_bar_links_runs_and_schedules_for_a_viewer_granted_both(driver, served):
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/")
    nav = driver.find_element(By.CSS_SELECTOR, ".topbar nav.sections")
    links = [(a.text, a.get_attribute("aria-current")) for a in nav.find_elements(By.TAG_NAME, "a")]
    assert links == [("Runs", "page"), ("Schedules", None)]
    nav.find_element(By.LINK_TEXT, "Schedules").click()
    wait_for(driver, lambda d: d.current_url.endswith("/dashboard/schedules"), message="the schedules page")
    wait_for(driver, lambda d: "No schedules yet." in d.find_element(By.ID, "empty").text, message="the empty page")
    current = driver.find_element(By.CSS_SELECTOR, '.topbar nav.sections a[aria-current="page"]')
    assert current.text == "Schedules"


def test_without_the_schedules_grant_there_is_no_page_no_link_and_no_action(driver, tmp_path):
    with schedules_app(tmp_path, driver, authorize_schedules=lambda request: False) as served:
        served.call(schedules.create, "nightly", digest, "0 2 * * *", input={}, runtime=served.runtime)
        grant(driver, served)
        driver.get(f"{served.url}/dashboard/")
        wait_for(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
        assert not driver.find_elements(By.CSS_SELECTOR, ".topbar nav.sections")
        driver.get(f"{served.url}/dashboard/schedules")
        assert "route_not_found" in driver.find_element(By.TAG_NAME, "body").text
        refused = httpx.post(f"{served.url}/dashboard/schedules/nightly/pause", cookies={"viewer": "ops"})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "route_not_found"
        assert served.call(schedules.get, "nightly", runtime=served.runtime).paused is False


def test_a_pause_without_the_pages_token_is_refused(driver, served):
    served.call(schedules.create, "nightly", digest, "0 2 * * *", input={}, runtime=served.runtime)
    origin = {"origin": served.url, "sec-fetch-site": "same-origin"}
    refused = httpx.post(f"{served.url}/dashboard/schedules/nightly/pause", cookies={"viewer": "ops"}, headers=origin)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site_request"
    wrong_method = httpx.get(f"{served.url}/dashboard/schedules/nightly/pause", cookies={"viewer": "ops"})
    assert wrong_method.status_code == 405
    assert served.call(schedules.get, "nightly", runtime=served.runtime).paused is False

"""What a queued run waits for, in the dashboard in a real headless Chromium (Debian's, driven by
selenium) against the app served by uvicorn on 127.0.0.1 over the memory store: the run page's
"Queued for" row, its priority and key, and the runs list's outcome column.

One browser for the module; every test has its own app. The browser's grant is the ``viewer=ops``
cookie the app's authorizers look for.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser import Served, chromium, grant, ops_only, served_in_background, wait_for
from flue_core import RunContext, Runtime, runs, workflow
from flue_core.http import create_app

GATES: dict[str, anyio.Event] = {}
SLOT_MESSAGE = "A slot of key 'acme': 1 of 1 running."


@workflow(name="flow-dash-per-customer", http=True, concurrency=1, concurrency_key="customer")
async def per_customer(ctx: RunContext, input: dict) -> str:
    await GATES[input["gate"]].wait()
    return input["customer"]


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def served(driver: WebDriver) -> Iterator[Served]:
    """The app on a memory store, the dashboard's reads and listing granted to the ``viewer=ops`` cookie."""
    runtime = Runtime([per_customer], store="memory://", shutdown_grace=0.2)
    grants = {"authorize_run_read": ops_only, "authorize_run_list": ops_only}
    with served_in_background(runtime, lambda rt: create_app(rt, dashboard=True, **grants)) as served:
        try:
            yield served
        finally:
            for gate in GATES.values():
                served.call(gate.set)
            GATES.clear()
            driver.delete_all_cookies()


def start_over_http(served: Served, input: dict, priority: int | None = None) -> str:
    params = {} if priority is None else {"priority": str(priority)}
    response = httpx.post(f"{served.url}/workflows/flow-dash-per-customer", json=input, params=params)
    assert response.status_code == 202, response.text
    return response.json()["runId"]


def saturate(served: Served, priority: int | None = None) -> tuple[str, str]:
    """``(running, queued)``: two runs of key ``acme`` (one slot per key), the first holding the slot."""
    GATES["gate"] = served.event()
    running = start_over_http(served, {"gate": "gate", "customer": "acme"})

    async def started() -> None:
        with anyio.fail_after(10):
            while (await runs.get(running, runtime=served.runtime)).status != "running":
                await anyio.sleep(0.02)

    served.call(started)
    return running, start_over_http(served, {"gate": "gate", "customer": "acme"}, priority)


def text(driver: WebDriver, selector: str) -> str | None:
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.textContent : null", selector)


def details(driver: WebDriver) -> dict[str, str]:
    """The run page's record as ``{name: value}``, read in one go (the list is rebuilt as the run changes)."""
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('#details dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent])"
    )
    return dict(pairs)


def test_the_run_page_of_a_queued_run_of_a_busy_key_says_it_waits_for_a_slot(driver, served):
    running, queued = saturate(served, priority=9)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{queued}")
    wait_for(driver, lambda d: text(d, "#queued-for") == SLOT_MESSAGE, message="the Queued for row")
    shown = details(driver)
    assert shown["Queued for"] == SLOT_MESSAGE
    assert shown["Priority"] == "9" and shown["Concurrency key"] == "acme"
    assert driver.find_element(By.ID, "queued-for").get_attribute("title") == SLOT_MESSAGE
    assert text(driver, "#status") == "Queued"


def test_the_queued_for_row_goes_once_the_run_takes_the_freed_slot(driver, served):
    running, queued = saturate(served)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{queued}")
    wait_for(driver, lambda d: text(d, "#queued-for") == SLOT_MESSAGE, message="the Queued for row")
    served.call(GATES["gate"].set)
    wait_for(driver, lambda d: text(d, "#status") == "Completed", message="the run completed")
    assert text(driver, "#queued-for") is None
    assert "Queued for" not in details(driver)


def test_the_run_page_of_a_running_run_has_no_queued_for_row(driver, served):
    running, queued = saturate(served)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/runs/{running}")
    wait_for(driver, lambda d: text(d, "#status") == "Running", message="the running record")
    assert "Queued for" not in details(driver) and "Priority" not in details(driver)


def test_the_runs_list_says_what_a_queued_run_waits_for_in_its_row(driver, served):
    running, queued = saturate(served)
    grant(driver, served)
    driver.get(f"{served.url}/dashboard/")
    wait_for(
        driver,
        lambda d: text(d, f'tr[data-run-id="{queued}"] .c-outcome .queued-for') == SLOT_MESSAGE,
        message="the queued run's row says what it waits for",
    )
    assert text(driver, f'tr[data-run-id="{running}"] .queued-for') is None
    served.call(GATES["gate"].set)
    wait_for(
        driver,
        lambda d: text(d, f'tr[data-run-id="{queued}"] .c-outcome') == '"acme"',
        timeout=15,
        message="the row follows the run to its result",
    )

"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium) and an app
served from a background event loop, for the dashboard's tests and for ``scripts/screenshots``.

Selenium's calls block, so the app does not share the test's thread: a blocking portal (anyio) runs
the runtime and uvicorn on an event loop of their own, and the test reaches it with ``portal.call``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from starlette.types import ASGIApp

from flue_core import Runtime
from flue_core.http import serve

#: Flags for a browser running as root on a machine without a display, talking to 127.0.0.1 only.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
)
LAPTOP = (1440, 900)


def chromium_paths() -> tuple[str, str]:
    """The browser and its driver, or an error that says how to install them (never a skip)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError(
            "The dashboard's browser tests need Debian's chromium and chromium-driver"
            " (apt-get install chromium chromium-driver; ./scripts/test installs them when it runs as root)."
        )
    return browser, driver


@contextmanager
def chromium(size: tuple[int, int] = LAPTOP) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile and a viewport of ``size`` CSS pixels."""
    browser, driver_path = chromium_paths()
    with tempfile.TemporaryDirectory(prefix="flue-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser  # the system's: selenium must not look for (or fetch) its own
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            # The window's size is not the page's: set the viewport itself, as a laptop's screen shows it.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
            )
            yield driver
        finally:
            driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 10, message: str = "") -> Any:
    """What ``condition(driver)`` returns once it is truthy (polled every 50 ms), else a timeout error.

    An element that went stale while the condition read it (the page navigated or re-rendered
    between finding and reading) counts as "not yet", like one not found. Chromium reports some
    of those as an "unknown error" naming a node that "does not belong to the document" rather
    than as a stale element: that one counts as "not yet" too, any other error does not."""
    ignored = (NoSuchElementException, StaleElementReferenceException)

    def settled(d: WebDriver) -> Any:
        try:
            return condition(d)
        except WebDriverException as error:
            if isinstance(error, ignored) or "does not belong to the document" in (error.msg or ""):
                return False
            raise

    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(settled, message)


@dataclass
class Served:
    """An app served from a background event loop: ``url`` is its base URL, ``call`` runs on its loop."""

    portal: BlockingPortal
    runtime: Runtime
    url: str

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the app's loop (awaited if it is a coroutine function)."""
        if kwargs:
            return self.portal.call(lambda: fn(*args, **kwargs))
        return self.portal.call(fn, *args)

    def event(self) -> anyio.Event:
        """An event workflows of this app can wait on; ``served.call(event.set)`` opens it."""
        return self.portal.call(_new_event)


async def _new_event() -> anyio.Event:
    return anyio.Event()


def ops_only(request: Any, run: Any = None) -> bool:
    """The dashboard tests' grant: the ``viewer=ops`` cookie, which :func:`grant` gives the browser."""
    return request.cookies.get("viewer") == "ops"


def grant(driver: WebDriver, served: Served) -> None:
    """Give the browser the cookie :func:`ops_only` grants (set on a public file of the app's origin)."""
    driver.get(f"{served.url}/dashboard/static/favicon.svg")
    driver.add_cookie({"name": "viewer", "value": "ops", "path": "/"})


@contextmanager
def served_in_background(runtime: Runtime, make_app: Callable[[Runtime], ASGIApp]) -> Iterator[Served]:
    """Open ``runtime`` and serve ``make_app(runtime)`` on 127.0.0.1, on a loop in another thread."""
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal("asyncio"))
        stack.enter_context(portal.wrap_async_context_manager(runtime))
        url = stack.enter_context(portal.wrap_async_context_manager(serve(make_app(runtime))))
        yield Served(portal, runtime, url)

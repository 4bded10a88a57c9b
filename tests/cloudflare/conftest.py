"""Fixtures for tests on a real workerd: an application served by a local workerd, built from the
cached ingredients (fetched from the registries on first use), stopped after its tests.

A missing ingredient (npm, capnp that cannot be installed, an unreachable registry) fails the test
that needs it with the tooling's message; nothing here skips.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flue_cloudflare.devtools import Cache, LocalWorker, WorkerApp
from workerd_support import ROOT, WORKERS, runs_app, smoke_app, store_app

# The workflows a test Worker serves are imported by host-side tests too (to serve them locally).
sys.path.insert(0, str(WORKERS))
#: The deploy check's upload sizes, reported at the end of the run.
UPLOAD_REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def upload_reports(request: pytest.FixtureRequest) -> list[str]:
    """Lines shown in the run's summary: the size of an upload against the plans' limits."""
    return request.config.stash.setdefault(UPLOAD_REPORTS, [])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reports = config.stash.get(UPLOAD_REPORTS, [])
    if reports:
        terminalreporter.section("Cloudflare: the upload of wrangler deploy --dry-run")
        for line in reports:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cloudflare_cache() -> Cache:
    """The project's tooling cache (``.cloudflare/``, or ``$FLUE_CLOUDFLARE_CACHE``)."""
    return Cache.default(ROOT)


@pytest.fixture(scope="module")
def local_worker(
    tmp_path_factory: pytest.TempPathFactory, cloudflare_cache: Cache
) -> Iterator[Callable[..., LocalWorker]]:
    """``local_worker(app, **options)``: ``app`` started on workerd in a folder of its own (storage,
    configuration, log), stopped when the module's tests are done. Kill and restart it freely."""
    started: list[LocalWorker] = []

    def start(app: WorkerApp, **options: Any) -> LocalWorker:
        worker = LocalWorker(app, tmp_path_factory.mktemp(app.name), cache=cloudflare_cache, **options)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def smoke(local_worker: Callable[..., LocalWorker]) -> LocalWorker:
    """The smoke Worker, one workerd per test module."""
    return local_worker(smoke_app())


@pytest.fixture(scope="session")
def runs_worker(tmp_path_factory: pytest.TempPathFactory, cloudflare_cache: Cache) -> Iterator[LocalWorker]:
    """The runs Worker (runs executed by their objects, a cron trigger, a queue), one workerd for
    every test module that uses it. Tests that kill workerd use their own (``local_worker``)."""
    worker = LocalWorker(runs_app(), tmp_path_factory.mktemp("runs"), cache=cloudflare_cache)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def store_worker(local_worker: Callable[..., LocalWorker]) -> LocalWorker:
    """The store Worker: the target's objects as the store of processes on the host."""
    return local_worker(store_app())

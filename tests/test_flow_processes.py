"""Flow control across processes on one store (a SQLite file, a real Redis, a real Postgres through
the flue-postgres package): ``flue worker flow_app``
processes never run more than a key's limit at once nor start more than a rate limit allows, and a
worker killed with -9 loses no run, whatever the limit held it for (``tests/flow_app.py``)."""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import anyio
import pytest

import flow_app
from worker_process import flue_worker
from flue_core import Runtime, runs, workflows
from flue_postgres.testing import postgres_server, postgres_url  # noqa: F401 (fixtures of the Postgres case)

pytestmark = pytest.mark.anyio
LEASE = "2"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flow.db'}"
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("FLUE_TEST_CALLS", str(folder))
    return folder


def worker(url: str) -> ContextManager[subprocess.Popen[str]]:
    """A ``flue worker flow_app`` process (lease of 2 s, so a killed one's runs move on soon)."""
    return flue_worker("flow_app", url, "--concurrency", "8", "--lease", LEASE, "--grace", "5")


def intervals(folder: Path, killed: dict[int, float]) -> list[tuple[str, str, float, float]]:
    """Every execution as ``(run_id, key, began, ended)``; one cut short by a kill ends at the kill."""
    found = []
    for file in folder.glob("*.calls"):
        pid = int(file.stem)
        began: dict[str, tuple[str, float]] = {}
        for line in file.read_text().splitlines():
            event, run_id, key, at = line.split()
            if event == "start":
                began[run_id] = (key, float(at))
            else:
                key, start = began.pop(run_id)
                found.append((run_id, key, start, float(at)))
        for run_id, (key, start) in began.items():
            found.append((run_id, key, start, killed[pid]))
    return found


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def test_two_workers_keep_each_key_to_its_limit_and_a_kill_loses_no_run(store_url: str, calls: Path) -> None:
    killed: dict[int, float] = {}
    async with Runtime(flow_app.WORKFLOWS, store=store_url, execute=False):
        receipts = [
            await workflows.start(flow_app.per_customer, input={"customer": f"c{n % 3}", "seconds": 0.3, "label": str(n)})
            for n in range(24)
        ]
        with worker(store_url) as first, worker(store_url):
            await anyio.sleep(0.8)
            first.kill()  # -9 mid-run: its runs resume elsewhere once its lease is out
            killed[first.pid] = time.time()
            first.wait()
            with worker(store_url):
                with anyio.fail_after(60):
                    results = [await runs.result(r.run_id) for r in receipts]
    assert results == [str(n) for n in range(24)]
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, key, start, end in intervals(calls, killed):
        by_key[key].append((start, end))
    assert sorted(by_key) == ["c0", "c1", "c2"]
    assert all(most_at_once(spans) <= 2 for spans in by_key.values()), by_key
    assert max(most_at_once(spans) for spans in by_key.values()) == 2  # the limit was used, not just kept


async def test_two_workers_hold_a_rate_limit_together_and_a_kill_loses_no_run(store_url: str, calls: Path) -> None:
    killed: dict[int, float] = {}
    async with Runtime(flow_app.WORKFLOWS, store=store_url, execute=False):
        receipts = [
            await workflows.start(flow_app.rated, input={"customer": "-", "seconds": 0.05, "label": str(n)}) for n in range(35)
        ]
        with worker(store_url) as first, worker(store_url):
            await anyio.sleep(1.2)
            first.kill()
            killed[first.pid] = time.time()
            first.wait()
            with anyio.fail_after(60):
                results = [await runs.result(r.run_id) for r in receipts]
            records = [await runs.get(r.run_id) for r in receipts]
    assert results == [str(n) for n in range(35)]
    starts = sorted(record.started_at.timestamp() for record in records if record is not None and record.started_at)
    assert len(starts) == 35
    for n in range(len(starts) - 10):
        assert starts[n + 10] - starts[n] >= 0.99, f"11 first starts within a second: {starts[n:n + 11]}"


async def test_debounced_starts_survive_a_worker_killed_in_the_window_and_run_once_with_the_last_input(
    store_url: str, calls: Path
) -> None:
    async with Runtime(flow_app.WORKFLOWS, store=store_url, execute=False):
        with worker(store_url) as first:
            receipts = [
                await workflows.start(flow_app.debounced, input={"customer": "k", "seconds": 0, "label": f"v{n}"})
                for n in range(40)
            ]
            first.kill()  # -9 while the window is open: the pending run is the store's, not the worker's
            first.wait()
        assert len({r.run_id for r in receipts}) == 1
        with worker(store_url):
            with anyio.fail_after(30):
                assert await runs.result(receipts[0].run_id) == "v39"
    assert [run_id for run_id, *_ in intervals(calls, {})] == [receipts[0].run_id]

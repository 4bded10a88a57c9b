"""Many processes on one Redis: ``flue worker`` processes execute what admit-only processes admit,
exactly once; a worker killed with -9 loses nothing; Redis restarts lose no acknowledged run and no
event to a follower; cancels reach the executing process at once. Real redis-server, real processes
(``tests/redis_app.py`` holds the workflows and the admitter)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import anyio
import pytest

import redis_app
from worker_process import TESTS, flue_worker
from flue_core import RunStatus, Runtime, runs, workflows
from flue_core.cursors import decode_cursor
from flue_node_like.redis_server import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("FLUE_TEST_CALLS", str(folder))
    return folder


def executions(folder: Path) -> Counter[tuple[str, str]]:
    """``(what, run_id)`` → how many times it ran, over every process."""
    found: Counter[tuple[str, str]] = Counter()
    for file in folder.glob("*.calls"):
        for line in file.read_text().splitlines():
            what, run_id = line.split()
            found[(what, run_id)] += 1
    return found


def executed_by(folder: Path, what: str, run_id: str) -> int | None:
    for file in folder.glob("*.calls"):
        if f"{what} {run_id}\n" in file.read_text():
            return int(file.stem)
    return None


def worker(url: str, *, concurrency: int = 8, grace: float = 10.0) -> ContextManager[subprocess.Popen[str]]:
    """A ``flue worker redis_app`` process on ``url``."""
    return flue_worker("redis_app", url, "--concurrency", str(concurrency), "--grace", str(grace))


def admitter(url: str, count: int, modulo: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, redis_app.__file__, url, str(count), str(modulo), str(out)], cwd=TESTS)


def web(url: str) -> Runtime:
    """This test process as a web process would be: it admits and reads, and executes nothing."""
    return Runtime(redis_app.WORKFLOWS, store=url, execute=False)


async def test_runs_admitted_in_any_process_complete_exactly_once(redis_url: str, calls: Path, tmp_path: Path) -> None:
    out = tmp_path / "admitted.jsonl"
    with worker(redis_url), worker(redis_url):
        other = admitter(redis_url, 200, 0, out)
        async with web(redis_url):
            here = [await workflows.start(redis_app.noop, input={"n": n}) for n in range(100)]
            parents = [await workflows.start(redis_app.parent, input={"n": n}) for n in range(20)]
            assert other.wait(timeout=60) == 0
            there = [json.loads(line)[2] for line in out.read_text().splitlines()]
            with anyio.fail_after(30):
                for run_id in [r.run_id for r in here + parents] + there:
                    await runs.wait(run_id)
            children = [r for p in parents for r in (await runs.list(parent=p.run_id)).runs]
            for receipt in parents:
                assert await runs.result(receipt.run_id) == (await runs.get(receipt.run_id)).input["n"]
    done = executions(calls)
    noop_runs = {r.run_id for r in here} | set(there) | {c.run_id for c in children}
    assert len(noop_runs) == 320 and all(done[("noop", run_id)] == 1 for run_id in noop_runs)
    assert all(done[("parent", p.run_id)] == 1 for p in parents)
    assert sum(done.values()) == 340


async def test_a_worker_killed_mid_run_leaves_its_run_to_the_other_worker_without_rerunning_stored_steps(
    redis_url: str, calls: Path
) -> None:
    with worker(redis_url) as first, worker(redis_url) as second:
        async with web(redis_url) as rt:
            receipt = await workflows.start(redis_app.steps, input={})
            with anyio.fail_after(10):
                while "first" not in await rt.target.store.load_steps(receipt.run_id):
                    await anyio.sleep(0.02)
            pid = executed_by(calls, "first", receipt.run_id)
            victim = first if pid == first.pid else second
            assert pid == victim.pid
            victim.kill()  # -9: no goodbye, its lease stays registered
            victim.wait()
            with anyio.fail_after(15):
                assert await runs.result(receipt.run_id) == {"first": "first", "attempt": 1}
            types = [event.type async for event in runs.events(receipt.run_id)]
            record = await runs.get(receipt.run_id)
    assert executions(calls)[("first", receipt.run_id)] == 1  # the stored step was replayed, not run again
    assert types == ["run_queued", "run_start", "step", "run_interrupted", "run_resume", "run_end"]
    assert record.attempt == 1 and record.recoveries == 1  # retries=0: the crash was no failed attempt


async def test_ten_thousand_runs_from_four_processes_complete_once_and_each_key_names_one_run(
    redis_url: str, calls: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with worker(redis_url, concurrency=32), worker(redis_url, concurrency=32):
        outs = [tmp_path / f"admitted{n}.jsonl" for n in range(4)]
        # Processes 0 and 1 admit 2,500 runs each without keys; 2 and 3 admit 2,500 each with keys
        # k0..k1999, so 3,000 of their admissions repeat a key another admission used (often the other process's).
        admitters = [admitter(redis_url, 2500, 0 if n < 2 else 2000, out) for n, out in enumerate(outs)]
        for process in admitters:
            assert process.wait(timeout=60) == 0
        admitted = [json.loads(line) for out in outs for line in out.read_text().splitlines()]
        assert len(admitted) == 10_000
        by_key: dict[str, set[str]] = {}
        for _, key, run_id in admitted:
            if key is not None:
                by_key.setdefault(key, set()).add(run_id)
        assert len(by_key) == 2000 and all(len(ids) == 1 for ids in by_key.values())
        run_ids = {run_id for _, _, run_id in admitted}
        assert len(run_ids) == 5000 + 2000
        async with web(redis_url):
            with anyio.fail_after(60):
                for run_id in run_ids:
                    record = await runs.wait(run_id)
                    assert record.status == RunStatus.COMPLETED
            stored, cursor = 0, None
            while True:
                page = await runs.list(limit=1000, cursor=cursor)
                stored += len(page.runs)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
    done = executions(calls)
    assert stored == len(run_ids) and all(done[("noop", run_id)] == 1 for run_id in run_ids) and sum(done.values()) == 7000
    assert time.monotonic() - started < 60


async def test_acknowledged_runs_and_their_events_survive_redis_restarts_before_and_during_execution(
    own_redis_server: RedisServer, calls: Path
) -> None:
    url = own_redis_server.url(prefix="restarts")  # appendfsync always: what was acknowledged is on disk
    async with web(url) as rt:
        receipts = [await workflows.start(redis_app.ticker, input={"ticks": 30, "pause": 0.03}) for _ in range(20)]
        own_redis_server.restart()  # between admission and execution
        seen: dict[str, list[int]] = {}

        async def follow(run_id: str) -> None:
            seen[run_id] = [event.index async for event in runs.events(run_id, follow=True)]

        with worker(url):
            async with anyio.create_task_group() as tasks:
                for receipt in receipts[:5]:
                    tasks.start_soon(follow, receipt.run_id)
                with anyio.fail_after(20):
                    while not any(("ticker", r.run_id) in executions(calls) for r in receipts):
                        await anyio.sleep(0.02)
                await anyio.sleep(0.2)
                own_redis_server.restart()  # mid-run: runs are executing, followers reading
                with anyio.fail_after(60):
                    for receipt in receipts:
                        assert await runs.result(receipt.run_id) == 30
        for receipt in receipts:
            types = [event.type async for event in runs.events(receipt.run_id)]
            assert types.count("tick") == 30 and types[-1] == "run_end"
        assert rt.target.store.feed.reconnects == 2  # type: ignore[attr-defined]
    for run_id, indexes in seen.items():  # every event once, in order, none missed across the restart
        assert indexes == list(range(len(indexes))) and len(indexes) >= 33, run_id


async def test_a_cancel_reaches_the_worker_executing_the_run_within_a_second(redis_url: str, calls: Path) -> None:
    with worker(redis_url):
        async with web(redis_url):
            receipt = await workflows.start(redis_app.sleepy, input={"seconds": 60})
            with anyio.fail_after(10):
                while ("sleepy", receipt.run_id) not in executions(calls):
                    await anyio.sleep(0.02)
            asked = time.monotonic()
            record = await runs.cancel(receipt.run_id, wait_for=5)
            assert record.status == RunStatus.CANCELLED and time.monotonic() - asked < 1


async def test_a_stopped_worker_lets_its_running_run_finish_and_exits_0(redis_url: str, calls: Path) -> None:
    with worker(redis_url) as process:
        async with web(redis_url):
            receipt = await workflows.start(redis_app.sleepy, input={"seconds": 0.5})
            with anyio.fail_after(10):
                while ("sleepy", receipt.run_id) not in executions(calls):
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            assert await runs.result(receipt.run_id, timeout=10) == "slept"
        assert process.wait(timeout=10) == 0


async def all_runs() -> list:  # type: ignore[type-arg]
    found, cursor = [], None
    while True:
        page = await runs.list(limit=1000, cursor=cursor)
        found += page.runs
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def test_list_cursors_stay_correct_while_other_processes_admit(redis_url: str, tmp_path: Path) -> None:
    async with web(redis_url):
        for n in range(300):
            await workflows.start(redis_app.noop, input={"n": n})
        first = await runs.list(limit=50)
        busy = admitter(redis_url, 3000, 0, tmp_path / "busy.jsonl")  # admits while we page
        try:
            listed, cursor = [], first.next_cursor
            while cursor is not None:
                page = await runs.list(limit=20, cursor=cursor)
                listed += [r.run_id for r in page.runs]
                cursor = page.next_cursor
                await anyio.sleep(0.01)
        finally:
            assert busy.wait(timeout=60) == 0
        # The pages after the first hold exactly the runs older than the first page's last, newest
        # first: the runs admitted meanwhile are newer and never shift them.
        boundary = decode_cursor(first.next_cursor)  # type: ignore[arg-type]
        everything = await all_runs()
        assert len(everything) == 3300
        assert listed == [r.run_id for r in everything if (r.created_at, r.run_id) < boundary] and len(listed) == 250

"""Many processes on one Postgres: ``flue worker`` processes execute what admit-only processes admit,
exactly once; a worker killed with -9 loses nothing and no stored step runs again; a Postgres crash
(``pg_ctl stop -m immediate``) before and during execution loses no acknowledged run and no event to a
follower, and an outage during a step is waited out; cancels reach the executing process at once.
Real Postgres, real processes (``postgres_app.py`` holds the workflows and the admitter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

import postgres_app
from flue_core import RunStatus, Runtime, runs, workflows
from flue_postgres.server import PostgresServer

pytestmark = pytest.mark.anyio
TESTS = Path(__file__).resolve().parent


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


@contextmanager
def worker(url: str, *, concurrency: int = 8, grace: float = 10.0) -> Iterator[subprocess.Popen[str]]:
    """A ``flue worker postgres_app`` process on ``url``, started once it says it is executing; stopped
    with SIGTERM (or killed, if the test killed it already) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flue_core.cli", "worker", "postgres_app", "--store", url, "--concurrency", str(concurrency),
         "--grace", str(grace)],
        cwd=TESTS,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert "executing" in banner, f"the worker did not start: {banner}{process.stderr.read()}"
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def admitter(url: str, count: int, modulo: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, postgres_app.__file__, url, str(count), str(modulo), str(out)], cwd=TESTS)


def web(url: str) -> Runtime:
    """This test process as a web process would be: it admits and reads, and executes nothing."""
    return Runtime(postgres_app.WORKFLOWS, store=url, execute=False)


async def test_runs_admitted_in_any_process_complete_exactly_once(postgres_url: str, calls: Path, tmp_path: Path) -> None:
    out = tmp_path / "admitted.jsonl"
    with worker(postgres_url), worker(postgres_url):
        other = admitter(postgres_url, 200, 0, out)
        async with web(postgres_url):
            here = [await workflows.start(postgres_app.noop, input={"n": n}) for n in range(100)]
            parents = [await workflows.start(postgres_app.parent, input={"n": n}) for n in range(20)]
            assert other.wait(timeout=60) == 0
            there = [json.loads(line)[2] for line in out.read_text().splitlines()]
            with anyio.fail_after(60):
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


async def test_keys_admitted_from_several_processes_at_once_name_one_run_each(postgres_url: str, tmp_path: Path) -> None:
    outs = [tmp_path / f"admitted{n}.jsonl" for n in range(3)]
    admitters = [admitter(postgres_url, 600, 200, out) for out in outs]  # keys k0..k199, each asked for 9 times
    for process in admitters:
        assert process.wait(timeout=60) == 0
    by_key: dict[str, set[str]] = {}
    for out in outs:
        for line in out.read_text().splitlines():
            _, key, run_id = json.loads(line)
            by_key.setdefault(key, set()).add(run_id)
    assert len(by_key) == 200 and all(len(ids) == 1 for ids in by_key.values())
    async with web(postgres_url):
        assert len((await runs.list(limit=1000)).runs) == 200


async def test_a_worker_killed_mid_run_leaves_its_run_to_the_other_worker_without_rerunning_stored_steps(
    postgres_url: str, calls: Path
) -> None:
    with worker(postgres_url) as first, worker(postgres_url) as second:
        async with web(postgres_url) as rt:
            receipt = await workflows.start(postgres_app.steps, input={})
            with anyio.fail_after(10):  # the step stored, and then its event (appended without waiting)
                while "step" not in [event.type async for event in runs.events(receipt.run_id)]:
                    await anyio.sleep(0.02)
            assert "first" in await rt.target.store.load_steps(receipt.run_id)
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


async def test_acknowledged_runs_and_their_events_survive_postgres_crashes_before_and_during_execution(
    own_postgres_server: PostgresServer, calls: Path
) -> None:
    url = own_postgres_server.url("postgres", schema="crashes")
    async with web(url) as rt:
        receipts = [await workflows.start(postgres_app.ticker, input={"ticks": 30, "pause": 0.03}) for _ in range(20)]
        steppers = [await workflows.start(postgres_app.stepper, input={"count": 20, "pause": 0.05}) for _ in range(5)]
        own_postgres_server.restart("immediate")  # between admission and execution: a crash, no checkpoint
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
                own_postgres_server.restart("immediate")  # mid-run: runs are executing, followers reading
                with anyio.fail_after(60):
                    for receipt in receipts:
                        assert await runs.result(receipt.run_id) == 30
                    for receipt in steppers:
                        assert await runs.result(receipt.run_id) == 20
        done = executions(calls)
        for receipt in steppers:  # a stored step never runs again; only the one in flight at a crash may
            counts = [done[(f"step{n}", receipt.run_id)] for n in range(20)]
            assert min(counts) == 1 and sum(counts) <= 20 + 2, counts
        for receipt in receipts + steppers:
            types = [event.type async for event in runs.events(receipt.run_id)]
            assert types.count("run_end") == 1 and types[-1] == "run_end"
            assert receipt in steppers or types.count("tick") == 30
        assert rt.target.store.feed.reconnects >= 2  # type: ignore[attr-defined]
    for run_id, indexes in seen.items():  # every event once, in order, none missed across the crash
        assert indexes == list(range(len(indexes))) and len(indexes) >= 33, run_id


async def test_a_run_outlives_a_postgres_outage_during_its_step(own_postgres_server: PostgresServer, calls: Path) -> None:
    url = own_postgres_server.url("postgres", schema="outage")
    outage = 8.0
    with worker(url, concurrency=2) as process:
        async with web(url):
            receipt = await workflows.start(postgres_app.outage, input={"seconds": 1.0})
            with anyio.fail_after(10):
                while not executions(calls)[("long", receipt.run_id)]:
                    await anyio.sleep(0.02)
        own_postgres_server.stop("immediate")  # the step ends, and its result cannot be saved, while Postgres is down
        stopped = time.monotonic()
        await anyio.sleep(outage)
        own_postgres_server.start()
        async with web(url):
            with anyio.fail_after(60):
                record = await runs.wait(receipt.run_id)
            types = [event.type async for event in runs.events(receipt.run_id)]
        assert process.poll() is None, "the worker died of the outage"
    assert time.monotonic() - stopped >= outage
    assert record.status == RunStatus.COMPLETED and record.result == {"attempt": 1}, (record, types)
    done = executions(calls)
    assert done[("long", receipt.run_id)] <= 2 and done[("after", receipt.run_id)] == 1
    assert types[0] == "run_queued" and types[-1] == "run_end" and "run_retry" not in types


async def test_a_cancel_reaches_the_worker_executing_the_run_within_a_second(postgres_url: str, calls: Path) -> None:
    with worker(postgres_url):
        async with web(postgres_url):
            receipt = await workflows.start(postgres_app.sleepy, input={"seconds": 60})
            with anyio.fail_after(10):
                while ("sleepy", receipt.run_id) not in executions(calls):
                    await anyio.sleep(0.02)
            asked = time.monotonic()
            record = await runs.cancel(receipt.run_id, wait_for=5)
            assert record.status == RunStatus.CANCELLED and time.monotonic() - asked < 1

"""A hung worker is not alive: a worker process stopped mid-run (``SIGSTOP``) loses its runs to
another worker once its lease ran out, and what it writes when it comes back is refused.

Run as a program, this module is the worker: ``python test_hung_worker.py DB`` executes runs from
the SQLite file at DB with a short lease until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import anyio
import pytest

from flue_core import RunContext, RunStatus, Runtime, runs, workflow, workflows
from flue_core.cli.stopping import sigterm_as_ctrl_c
from flue_core.store import RunStore
from flue_node_like import LocalTarget, SqliteStore

pytestmark = pytest.mark.anyio

LEASE = 1.5


async def hold(ready: str, release: str) -> int:
    """The first execution reports itself, then holds the step until released; later ones return."""
    if not Path(ready).exists():
        Path(ready).write_text(str(os.getpid()))
        while not Path(release).exists():
            await anyio.sleep(0.02)
    return os.getpid()


@workflow(name="hung-hold")
async def hung_hold(ctx: RunContext, input: dict) -> dict:
    return {"step_by": await ctx.step("hold", hold, input["ready"], input["release"])}


def target(db: str, *, execute: bool = True) -> LocalTarget:
    # Renewals every 0.5 s: few moments at which SIGSTOP could catch the worker inside a write.
    return LocalTarget(SqliteStore(db), lease=LEASE, sweep_interval=0.5, execute=execute)


async def work(db: str) -> None:
    async with Runtime([hung_hold], target=target(db)):
        print("ready", flush=True)
        await anyio.sleep_forever()


def worker(db: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, __file__, str(db)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await anyio.sleep(0.02)


async def stop_after_a_renewal(store: RunStore, process: subprocess.Popen[str], run_id: str) -> float:
    """``SIGSTOP`` the worker ``process`` mid-step (hung: its process is there, its lease no longer
    renewed) just after it renewed its lease, the start of ``run_id`` stored; the renewal's time.

    A process stopped inside a write would keep SQLite's write lock, and no other process could
    write to the file: the moment after a renewal is one with no write under way or due soon."""

    async def renewed() -> float | None:
        return next((info.heartbeat_at for info in await store.workers() if info.pid == process.pid), None)

    while "run_start" not in [event.type async for event in runs.events(run_id)]:
        await anyio.sleep(0.02)
    before = await renewed()
    with anyio.fail_after(10):
        while (after := await renewed()) == before:
            await anyio.sleep(0.002)
    os.kill(process.pid, signal.SIGSTOP)
    assert after is not None
    return after


async def test_a_stopped_worker_loses_its_run_after_its_lease_and_its_late_writes_are_refused(tmp_path):
    db, ready, release = tmp_path / "flue.db", tmp_path / "ready", tmp_path / "release"
    workers: list[subprocess.Popen[str]] = []
    try:
        workers.append(stopped := worker(db))
        async with Runtime([hung_hold], target=target(str(db), execute=False)) as admitter:
            receipt = await workflows.start(hung_hold, input={"ready": str(ready), "release": str(release)})
            await wait_for(lambda: ready.exists() and ready.read_text() != "", "the run's step to begin")
            assert int(ready.read_text()) == stopped.pid
            last_renewal = await stop_after_a_renewal(admitter.target.store, stopped, receipt.run_id)

            workers.append(adopter := worker(db))
            with anyio.fail_after(20):
                record = await runs.wait(receipt.run_id)
            assert record.status == RunStatus.COMPLETED
            assert record.result == {"step_by": adopter.pid}
            events = [event async for event in runs.events(receipt.run_id)]
            [interrupted] = [event for event in events if event.type == "run_interrupted"]
            assert interrupted.data["reason"] == "died"
            assert interrupted.timestamp.timestamp() - last_renewal > LEASE  # not before its lease ran out

            release.write_text("")
            os.kill(stopped.pid, signal.SIGCONT)  # it finishes its step and would go on to end the run
            stopped.send_signal(signal.SIGTERM)
            assert stopped.wait(timeout=20) == 0  # every write it tried was made or refused by now

            after = await runs.get(receipt.run_id)
            assert after is not None and after.status == RunStatus.COMPLETED
            assert after.result == {"step_by": adopter.pid} and after.ended_at == record.ended_at
            types = [event.type async for event in runs.events(receipt.run_id)]
            assert types.count("run_end") == 1 and types[-1] == "run_end"
    finally:
        for process in workers:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()


if __name__ == "__main__":
    with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):
        anyio.run(work, sys.argv[1])

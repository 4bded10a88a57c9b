"""How fast runs resume after their worker dies or hangs: ``bench/run recovery``.

A worker process executes ``--runs`` runs of a workflow that stores a step and then blocks (its
process is the one that fails). The benchmark process is a second worker on the same store. Then:

* **kill -9**: the first worker is killed; same host, so its death is seen at the second worker's next
  sweep (``sweep_interval``), without waiting for the lease;
* **hung (SIGSTOP)**: the first worker is stopped instead; it is gone once its lease (``--lease``)
  ran out, as a worker on another host is.

For each, the time from the signal to each run's ``run_resume`` event (its wall-clock timestamp) and
to each run's end: p50 and max, on SQLite (a file) and Redis (its own ``redis-server``). Every run
must complete with attempt 1, its stored step not run again.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from bench.recovery_app import WORKFLOWS, target
from flue_core import Runtime, RunStatus, runs

APP = Path(__file__).with_name("recovery_app.py")


async def measure(store: str, how: str, count: int, lease: float, sweep: float, folder: Path) -> dict[str, float]:
    ready = folder / f"{store.split(':', 1)[0]}-{how}.ready"
    child = subprocess.Popen([sys.executable, str(APP), store, str(count), str(ready), str(lease), str(sweep)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the first worker never got its runs under way"
            time.sleep(0.01)
        ids = ready.read_text().split()
        async with Runtime(WORKFLOWS, target=target(store, lease, sweep)):
            await anyio.sleep(sweep * 2)  # the second worker is up and sweeping before the failure
            signalled = time.time()
            os.kill(child.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            resumed, ended = [], []
            with anyio.fail_after(lease * 3 + 30):
                for run_id in ids:
                    record = await runs.wait(run_id)
                    assert record.status == RunStatus.COMPLETED and record.attempt == 1, record
                    events = [e async for e in runs.events(run_id)]
                    resume = next(e for e in events if e.type == "run_resume")
                    resumed.append(resume.timestamp.timestamp() - signalled)
                    ended.append(record.ended_at.timestamp() - signalled)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        child.wait()
    return {"resume_p50": statistics.median(resumed), "resume_max": max(resumed), "end_max": max(ended)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--lease", type=float, default=5.0, help="lease of both workers, seconds (default 30 in use)")
    parser.add_argument("--sweep", type=float, default=2.0, help="sweep_interval, seconds (the default)")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores = [("SQLite", f"sqlite:///{folder}/flue.db")]
        server = None
        if not args.no_redis:
            from flue_node_like.redis_server import RedisServer

            server = RedisServer(folder / "redis").start()
            stores.append(("Redis", server.url(prefix="recovery")))
        try:
            for name, store in stores:
                for how in ("kill", "stop"):
                    figures = await measure(store, how, args.runs, args.lease, args.sweep, folder)
                    rows.append((name, how, figures))
        finally:
            if server is not None:
                server.stop()
    print(f"{args.runs} runs mid-step; lease {args.lease} s, sweep_interval {args.sweep} s\n")
    print("| store | failure | to `run_resume` p50 | max | to the last run's end |")
    print("|---|---|---:|---:|---:|")
    for name, how, f in rows:
        label = "kill -9 (same host)" if how == "kill" else "SIGSTOP (hung; as another host: lease)"
        print(f"| {name} | {label} | {f['resume_p50']:.2f} s | {f['resume_max']:.2f} s | {f['end_max']:.2f} s |")


if __name__ == "__main__":
    anyio.run(main)

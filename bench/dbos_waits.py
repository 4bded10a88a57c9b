"""DBOS 3.4 on its SQLite system database, measured the way :mod:`bench.waits` measures Flue.

Run in its own process (``python -m bench.dbos_waits DIR TIMERS SIGNALS PARKED``): DBOS keeps global
state and threads. Prints one JSON object. Async workflows throughout (``DBOS.sleep_async``,
``DBOS.recv_async``, ``DBOS.send_async``), started on this process's event loop. A DBOS workflow that
sleeps or waits for a message stays in memory as a task until it continues: that is what the parked
figure measures beside Flue's suspended runs.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from dbos import DBOS

from bench.stats import latency
from bench.waits import rss_mb, timer_margin

RESUMED: dict[str, float] = {}


@DBOS.workflow()
async def sleep_until(until: float) -> float:
    await DBOS.sleep_async(until - time.time())
    return time.time() - until


@DBOS.workflow()
async def wait_message() -> None:
    await DBOS.recv_async("go", timeout_seconds=3600)
    RESUMED[DBOS.workflow_id] = time.perf_counter()  # type: ignore[index]


async def _timers(count: int) -> dict[str, Any]:
    began = time.time()
    base = began + timer_margin(count)
    handles = [await DBOS.start_workflow_async(sleep_until, base + random.random()) for _ in range(count)]
    started_s = time.time() - began
    lateness = [await handle.get_result() for handle in handles]
    return {"count": count, **latency(lateness), "max_ms": max(lateness) * 1000, "started_s": started_s}


async def _signals(trials: int) -> dict[str, Any]:
    samples = []
    for _ in range(trials):
        handle = await DBOS.start_workflow_async(wait_message)
        await asyncio.sleep(0.05)  # DBOS has no "waiting" status to poll: give recv time to begin
        began = time.perf_counter()
        await DBOS.send_async(handle.workflow_id, "ok", "go")
        await asyncio.wait_for(handle.get_result(), 10)
        samples.append(RESUMED[handle.workflow_id] - began)
    return {"trials": trials, **latency(samples)}


async def _parked(count: int) -> dict[str, Any]:
    gc.collect()
    rss, tasks = rss_mb(), len(asyncio.all_tasks())
    handles = [await DBOS.start_workflow_async(wait_message) for _ in range(count)]
    await asyncio.sleep(2)
    gc.collect()
    out = {"count": count, "rss_mb_added": rss_mb() - rss, "tasks_added": len(asyncio.all_tasks()) - tasks}
    for handle in handles:  # let them end, so DBOS shuts down cleanly
        await DBOS.send_async(handle.workflow_id, "ok", "go")
    for handle in handles:
        await handle.get_result()
    return out


async def measure(directory: Path, timers: int, signals: int, parked: int) -> dict[str, Any]:
    DBOS(config={"name": "flue-bench-waits", "system_database_url": f"sqlite:///{directory / 'dbos.sqlite'}"})
    DBOS.launch()
    try:
        return {"timers": await _timers(timers), "signals": await _signals(signals), "parked": await _parked(parked)}
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    directory, *counts = sys.argv[1:]
    timers, signals, parked = (int(c) for c in counts)
    print(json.dumps(asyncio.run(measure(Path(directory), timers, signals, parked))))

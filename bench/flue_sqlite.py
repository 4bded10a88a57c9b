"""Flue's local target on SQLite: admission, end-to-end and event delivery, as host code sees them.

Runs execute in this process, as they do in a real application: every ``start()`` measured here
also has its run claimed, executed and finished by the same event loop while admissions go on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from bench.stats import latency
from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_node_like import LocalTarget, SqliteStore

CONCURRENT_CALLERS = 32
EVENTS = 1000


@workflow(name="noop")
async def noop(ctx: RunContext) -> None:
    return None


_gates: dict[int, anyio.Event] = {}
_first_emit: dict[int, float] = {}


@workflow(name="emit-1000")
async def emit_1000(ctx: RunContext, input: dict) -> None:
    """Waits until the follower is attached, then emits ``EVENTS`` events (``paced``: yielding to the
    event loop after each one, as a workflow doing real work between events would)."""
    trial = input["trial"]
    await _gates[trial].wait()
    _first_emit[trial] = time.perf_counter()
    for i in range(EVENTS):
        ctx.emit("tick", {"i": i})
        if input["paced"]:
            await anyio.sleep(0)


async def _sequential(count: int) -> tuple[list[float], float, list[str]]:
    samples, ids = [], []
    began = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        receipt = await workflows.start(noop)
        samples.append(time.perf_counter() - t0)
        ids.append(receipt.run_id)
    return samples, time.perf_counter() - began, ids


async def _concurrent(count: int, callers: int = CONCURRENT_CALLERS) -> tuple[list[float], float, list[str]]:
    samples: list[float] = []
    ids: list[str] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            receipt = await workflows.start(noop)
            samples.append(time.perf_counter() - t0)
            ids.append(receipt.run_id)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(callers):
            tg.start_soon(caller, count // callers + (1 if i < count % callers else 0))
    return samples, time.perf_counter() - began, ids


async def _drain(ids: Sequence[str]) -> float:
    """Wait until the given runs have ended; seconds waited."""
    began = time.perf_counter()
    for run_id in ids[-64:]:  # runs start in admission order, so the last ones end last (give or take)
        await runs.wait(run_id, timeout=120)
    return time.perf_counter() - began


async def _end_to_end(count: int) -> list[float]:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        receipt = await workflows.start(noop)
        await runs.result(receipt.run_id, timeout=30)
        samples.append(time.perf_counter() - t0)
    return samples


async def _events_to_follower(trial: int, paced: bool) -> float:
    """Seconds from the workflow's first emit to the follower receiving the last of ``EVENTS``."""
    _gates[trial] = anyio.Event()
    receipt = await workflows.start(emit_1000, input={"trial": trial, "paced": paced})
    received = 0
    async for event in runs.events(receipt.run_id, follow=True):
        if event.type == "run_start":
            _gates[trial].set()
        elif event.type == "tick":
            received += 1
            if received == EVENTS:
                done = time.perf_counter()
    assert received == EVENTS, received
    return done - _first_emit.pop(trial)


def _admission(samples: list[float], elapsed: float) -> dict[str, float]:
    return {**latency(samples), "per_s": len(samples) / elapsed, "count": len(samples)}


async def measure(
    path: Path,
    *,
    synchronous: str = "FULL",
    sequential: int = 5000,
    concurrent: int = 20000,
    end_to_end: int = 1000,
    event_trials: int = 5,
) -> dict[str, Any]:
    """Every headline figure for one store configuration, on a fresh database at ``path``."""
    out: dict[str, Any] = {"synchronous": synchronous}
    target = LocalTarget(SqliteStore(path, synchronous=synchronous))
    async with Runtime([noop, emit_1000], target=target, entry_points=False):
        _, _, ids = await _sequential(500)  # warm-up: imports, statement caches, page cache
        await _drain(ids)

        samples, elapsed, ids = await _sequential(sequential)
        out["sequential"] = _admission(samples, elapsed)
        out["sequential"]["drain_s"] = await _drain(ids)

        samples, elapsed, ids = await _concurrent(concurrent)
        out["concurrent"] = _admission(samples, elapsed)
        out["concurrent"]["drain_s"] = await _drain(ids)

        samples = await _end_to_end(end_to_end)
        out["end_to_end"] = latency(samples)

        for paced in (False, True):
            times = sorted([await _events_to_follower(trial, paced) for trial in range(event_trials)])
            out["events_paced" if paced else "events_burst"] = {
                "median_s": times[len(times) // 2],
                "max_s": times[-1],
                "trials": event_trials,
            }

    return out


async def measure_curve(path: Path, sizes: Sequence[int], batch: int = 2000) -> list[dict[str, Any]]:
    """Sequential admission of ``batch`` runs, measured once ``size`` runs are stored, for each size.

    The runs in between are admitted by concurrent callers and executed, like the measured ones.
    Before each batch the file system is synced, so the kernel's write-back of the tens of megabytes
    just written does not compete with the batch's commits: the curve shows what the number of
    stored runs costs, not what the burst that stored them costs.
    """
    points = []
    target = LocalTarget(SqliteStore(path))
    async with Runtime([noop], target=target, entry_points=False):
        stored = 0
        for size in sizes:
            if size > stored:
                _, _, ids = await _concurrent(size - stored)
                await _drain(ids)
                stored = size
            await anyio.to_thread.run_sync(os.sync)
            samples, elapsed, ids = await _sequential(batch)
            await _drain(ids)
            points.append({"stored_runs": stored, **_admission(samples, elapsed)})
            stored += batch
    return points

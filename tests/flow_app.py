"""Workflows of the multi-process flow-control tests, run by ``flue worker flow_app`` processes.

Every execution of a body appends ``<event> <run_id> <key> <time>`` lines to
``$FLUE_TEST_CALLS/<pid>.calls`` (``start`` when it begins, ``end`` when it returns), so a test can
tell how many executions of one key overlapped, across processes, and when each began.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
from pydantic import BaseModel

from flue_core import RateLimit, RunContext, workflow


class Job(BaseModel):
    customer: str
    seconds: float = 0.2
    label: str = ""


def record(event: str, run_id: str, key: str) -> None:
    folder = os.environ.get("FLUE_TEST_CALLS")
    if folder:
        with open(Path(folder) / f"{os.getpid()}.calls", "a", encoding="utf-8") as calls:
            calls.write(f"{event} {run_id} {key} {time.time():.6f}\n")


async def _body(ctx: RunContext, input: Job) -> str:
    record("start", ctx.run_id, input.customer)
    await anyio.sleep(input.seconds)
    record("end", ctx.run_id, input.customer)
    return input.label


@workflow(name="flow-per-customer", concurrency=2, concurrency_key="customer")
async def per_customer(ctx: RunContext, input: Job) -> str:
    return await _body(ctx, input)


@workflow(name="flow-rated", rate_limit=RateLimit(10, 1.0))
async def rated(ctx: RunContext, input: Job) -> str:
    return await _body(ctx, input)


@workflow(name="flow-debounced", debounce=0.5, debounce_key="customer")
async def debounced(ctx: RunContext, input: Job) -> str:
    return await _body(ctx, input)


WORKFLOWS = [per_customer, rated, debounced]

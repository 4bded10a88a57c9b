"""A Redis outage during a run is waited out: the run is not failed and its attempt not used up.

Real redis-server (stopped and started again), a real ``flue worker`` process executing the run."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

import redis_app
from flue_core import RunStatus, workflows, runs
from flue_node_like.redis_server import RedisServer
from test_redis_processes import calls, executions, web, worker  # noqa: F401  (calls is a fixture)

pytestmark = pytest.mark.anyio

OUTAGE = 20.0


async def test_a_run_outlives_a_redis_outage_during_its_step(own_redis_server: RedisServer, calls: Path) -> None:  # noqa: F811
    url = own_redis_server.url(prefix="outage")
    with worker(url, concurrency=2) as process:
        async with web(url) as rt:
            receipt = await workflows.start(redis_app.outage, input={"seconds": 1.0})
            with anyio.fail_after(10):
                while not executions(calls)[("long", receipt.run_id)]:
                    await anyio.sleep(0.02)
        own_redis_server.stop()  # the step ends, and its result cannot be saved, while Redis is down
        stopped = time.monotonic()
        await anyio.sleep(OUTAGE)
        own_redis_server.start()
        async with web(url) as rt:
            with anyio.fail_after(60):
                record = await runs.wait(receipt.run_id)
            types = [event.type async for event in runs.events(receipt.run_id)]
        assert process.poll() is None, "the worker died of the outage"
    assert time.monotonic() - stopped >= OUTAGE
    assert record.status == RunStatus.COMPLETED and record.result == {"attempt": 1}, (record, types)
    assert record.attempt == 1
    done = executions(calls)
    assert done[("long", receipt.run_id)] <= 2 and done[("after", receipt.run_id)] == 1
    assert types[0] == "run_queued" and types[-1] == "run_end" and "run_retry" not in types

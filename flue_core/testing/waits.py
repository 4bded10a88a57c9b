"""Contract: durable sleeps, delayed starts, retry back-off and concurrency limits.

A waiting run is held by nobody: it is ``waiting`` (or ``scheduled``) in the store, no executor holds
it, and it resumes when due — also after the runtime was closed and opened again over the same store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from flue_core import RunContext, RunStatus, runs, workflow, workflows
from flue_core.errors import InvalidSchedule
from flue_core.models import parse_timestamp, utc_now
from flue_core.testing.base import CALLS, ContractBase, all_events, wait_for_status


@workflow(name="contract-sleeper")
async def sleeper(ctx: RunContext, input: dict) -> dict[str, Any]:
    before = await ctx.step("before", _count, f"{ctx.run_id}:before")
    await ctx.sleep(input.get("seconds", 0.2))
    after = await ctx.step("after", _count, f"{ctx.run_id}:after")
    return {"before": before, "after": after}


@workflow(name="contract-sleep-loop")
async def sleep_loop(ctx: RunContext, input: dict) -> int:
    total = 0
    for _ in range(input["times"]):
        total += await ctx.step("tick", _count, f"{ctx.run_id}:tick")
        # Long enough that storing the sleep never outlasts it: a sleep whose time has already come
        # when it is stored does not suspend (no run_waiting), which a busy target can reach at 50 ms.
        await ctx.sleep(0.25)
    return total


@workflow(name="contract-sleep-until")
async def sleep_until(ctx: RunContext, input: dict) -> str:
    await ctx.sleep_until(utc_now() + timedelta(seconds=input["seconds"]))
    return "woke"


@workflow(name="contract-bad-sleep")
async def bad_sleep(ctx: RunContext, input: dict) -> None:
    await ctx.sleep(input["seconds"])


@workflow(name="contract-stamp")
async def stamp(ctx: RunContext) -> str:
    return utc_now().isoformat()


@workflow(name="contract-retry-later", retries=1)
async def retry_later(ctx: RunContext) -> int:
    CALLS[f"{ctx.run_id}:attempts"] += 1
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@workflow(name="contract-one-at-a-time", concurrency=1)
async def one_at_a_time(ctx: RunContext, input: dict) -> None:
    group = input["group"]
    CALLS[f"{group}:now"] += 1
    CALLS[f"{group}:peak"] = max(CALLS[f"{group}:peak"], CALLS[f"{group}:now"])
    await anyio.sleep(0.05)
    CALLS[f"{group}:now"] -= 1
    CALLS[f"{group}:order"] = CALLS[f"{group}:order"] * 10 + input["n"]


def _count(key: str) -> int:
    CALLS[key] += 1
    return CALLS[key]


WAIT_WORKFLOWS = [sleeper, sleep_loop, sleep_until, bad_sleep, stamp, retry_later, one_at_a_time]


async def released(rt, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """The executor lets go of a parked run as soon as the unwinding of its workflow is over, which
    may be a moment after the store says ``waiting`` (a busy machine): it holds no slot after that."""
    with anyio.fail_after(1):
        while run_id in rt.target._executor.running:
            await anyio.sleep(0.005)


class WaitsContract(ContractBase):
    async def test_a_sleeping_run_is_waiting_and_holds_no_slot(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(sleeper, input={"seconds": 1})
            record = await wait_for_status(rt, receipt.run_id, "waiting")
            assert record.waiting_for is not None and record.waiting_for.kind == "sleep"
            assert record.wake_at is not None and record.wake_at > utc_now()
            await released(rt, receipt.run_id)
            assert await runs.result(receipt.run_id, timeout=10) == {"before": 1, "after": 1}
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types == ["run_queued", "run_start", "step", "run_waiting", "run_resume", "step", "run_end"]

    async def test_a_sleep_resumes_the_same_attempt_and_steps_before_it_run_once(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            receipt = await workflows.start(sleeper, input={"seconds": 0.1})
            assert await runs.result(receipt.run_id, timeout=10) == {"before": 1, "after": 1}
            record = await runs.get(receipt.run_id)
            assert record is not None and record.attempt == 1 and record.wake_at is None and record.waiting_for is None

    async def test_sleeps_in_a_loop_each_wake_once(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(sleep_loop, input={"times": 4})
            assert await runs.result(receipt.run_id, timeout=10) == 1 + 2 + 3 + 4
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            waits = [t for t in types if t in ("run_waiting", "run_resume")]
            # Each suspension is followed by exactly one resumption. A sleep whose time had come by the
            # time it was stored (a very busy target) rightly does not suspend, so up to 4 of them.
            assert 1 <= waits.count("run_waiting") <= 4
            assert waits == ["run_waiting", "run_resume"] * waits.count("run_waiting")
            assert CALLS[f"{receipt.run_id}:tick"] == 4

    async def test_a_sleep_ends_on_time(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(sleep_until, input={"seconds": 0.3})
            await runs.result(receipt.run_id, timeout=10)
            events = await all_events(rt, receipt.run_id)
            until = next(e for e in events if e.type == "run_waiting").data["until"]
            resumed = next(e for e in events if e.type == "run_resume").timestamp
            lateness = (resumed - parse_timestamp(until)).total_seconds()
            assert 0 <= lateness < 0.5

    async def test_a_sleep_survives_a_restart(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(sleeper, input={"seconds": 0.5})
            await wait_for_status(rt, receipt.run_id, "waiting")
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            assert await runs.result(receipt.run_id, timeout=10) == {"before": 1, "after": 1}

    @pytest.mark.parametrize("seconds", [-1, 10**30, "soon", None])
    async def test_a_sleep_of_no_finite_length_fails_the_run(self, open_runtime, seconds):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            receipt = await workflows.start(bad_sleep, input={"seconds": seconds})
            record = await runs.wait(receipt.run_id, timeout=5)
            assert record.status == RunStatus.FAILED and record.error.type.endswith("StepError")

    async def test_a_delayed_start_is_scheduled_then_executes(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            asked = utc_now()
            receipt = await workflows.start(stamp, delay=0.3)
            record = await runs.get(receipt.run_id)
            assert record is not None and record.status == RunStatus.SCHEDULED
            assert record.waiting_for is not None and record.waiting_for.kind == "start"
            assert record.wake_at is not None and record.wake_at >= asked + timedelta(seconds=0.29)
            started = parse_timestamp(await runs.result(receipt.run_id, timeout=10))
            assert started >= record.wake_at
            first = (await all_events(rt, receipt.run_id))[0]
            assert first.type == "run_queued" and "startAt" in first.data

    async def test_a_start_at_a_time_executes_then(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            when = utc_now() + timedelta(seconds=0.3)
            receipt = await workflows.start(stamp, at=when)
            assert parse_timestamp(await runs.result(receipt.run_id, timeout=10)) >= when

    @pytest.mark.parametrize(
        "timing",
        [{"delay": -1}, {"delay": float("nan")}, {"delay": "1"}, {"delay": 10**12}, {"at": "tomorrow"},
         {"at": utc_now().replace(tzinfo=None)}, {"at": utc_now(), "delay": 1}],
    )  # fmt: skip
    async def test_a_bad_delay_is_refused_and_creates_no_run(self, open_runtime, timing):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            with pytest.raises(InvalidSchedule):
                await workflows.start(stamp, **timing)
            assert (await runs.list()).runs == []

    async def test_cancelling_a_scheduled_run_ends_it_at_once(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(stamp, delay=60)
            record = await runs.cancel(receipt.run_id)
            assert record.status == RunStatus.CANCELLED and record.wake_at is None
            assert [e.type for e in await all_events(rt, receipt.run_id)] == ["run_queued", "run_end"]

    async def test_cancelling_a_sleeping_run_ends_it_at_once(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(sleeper, input={"seconds": 60})
            await wait_for_status(rt, receipt.run_id, "waiting")
            record = await runs.cancel(receipt.run_id, wait_for=1)
            assert record.status == RunStatus.CANCELLED
            assert [e.type for e in await all_events(rt, receipt.run_id)][-2:] == ["run_waiting", "run_end"]

    async def test_a_delayed_start_survives_a_restart(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            receipt = await workflows.start(stamp, delay=0.4)
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            await runs.result(receipt.run_id, timeout=10)

    async def test_a_retry_waits_its_back_off_without_a_slot(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS) as rt:
            receipt = await workflows.start(retry_later)
            record = await wait_for_status(rt, receipt.run_id, "waiting")
            assert record.waiting_for is not None and record.waiting_for.kind == "retry"
            await released(rt, receipt.run_id)
            assert await runs.result(receipt.run_id, timeout=10) == 2
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types == ["run_queued", "run_start", "run_retry", "run_waiting", "run_start", "run_end"]

    async def test_a_concurrency_limit_runs_one_at_a_time_in_admission_order(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS):
            group = utc_now().isoformat()
            receipts = [await workflows.start(one_at_a_time, input={"group": group, "n": n}) for n in range(1, 6)]
            for receipt in receipts:
                await runs.result(receipt.run_id, timeout=10)
            assert CALLS[f"{group}:peak"] == 1
            assert CALLS[f"{group}:order"] == 12345

    async def test_a_concurrency_limit_holds_across_runtimes_on_one_store(self, open_runtime):
        async with open_runtime(workflows=WAIT_WORKFLOWS), open_runtime(workflows=WAIT_WORKFLOWS) as second:
            group = "shared-" + utc_now().isoformat()
            receipts = [
                await workflows.start(one_at_a_time, input={"group": group, "n": n}, runtime=second) for n in range(1, 7)
            ]
            for receipt in receipts:
                await runs.result(receipt.run_id, timeout=10, runtime=second)
            assert CALLS[f"{group}:peak"] == 1


"""Contract: flow control through the runtime, on a real target (per-key concurrency, priority under
saturation, rate limits, debounce, what a queued run waits for, and bad input that creates no run)."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest
from pydantic import BaseModel

from flue_core import RunContext, runs, workflow, workflows
from flue_core.errors import InvalidFlowKey, InvalidPriority, InvalidSchedule
from flue_core.flow.policy import RateLimit
from flue_core.models import utc_now
from flue_core.testing.base import GATES, ContractBase, wait_for_status

#: Start order of the runs of the flow workflows, by gate; how many run at once, by key.
STARTED: dict[str, list[str]] = {}
RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()


class Tenant(BaseModel):
    gate: str
    customer: str
    label: str = ""


@workflow(name="contract-per-customer", concurrency=1, concurrency_key="customer")
async def per_customer(ctx: RunContext, input: Tenant) -> str:
    key = f"{input.gate}:{input.customer}"
    RUNNING[key] += 1
    PEAK[key] = max(PEAK[key], RUNNING[key])
    STARTED.setdefault(input.gate, []).append(input.label)
    try:
        await GATES[input.gate].wait()
    finally:
        RUNNING[key] -= 1
    return input.label


@workflow(name="contract-one-at-a-time", concurrency=1)
async def one_at_a_time(ctx: RunContext, input: Tenant) -> str:
    STARTED.setdefault(input.gate, []).append(input.label)
    if input.label == "blocker":
        await GATES[input.gate].wait()
    return input.label


@workflow(name="contract-rated", rate_limit=RateLimit(3, 1.0))
async def rated(ctx: RunContext, input: Tenant) -> float:
    return utc_now().timestamp()


@workflow(name="contract-debounced", debounce=0.4, debounce_key=lambda input: input.customer)
async def debounced(ctx: RunContext, input: Tenant) -> str:
    return input.label


@workflow(name="contract-keyed-badly", concurrency=1, concurrency_key=lambda input: {"fail": 1 / 0, "int": 7}.get(input.customer))
async def keyed_badly(ctx: RunContext, input: Tenant) -> None:
    return None


@workflow(name="contract-debounce-parent")
async def debounce_parent(ctx: RunContext, input: Tenant) -> list[str]:
    children = [
        await ctx.start_child(debounced, input={"gate": input.gate, "customer": input.customer, "label": f"child{n}"})
        for n in range(2)
    ]
    return await ctx.wait_for_all(children)


FLOW_WORKFLOWS = [per_customer, one_at_a_time, rated, debounced, keyed_badly, debounce_parent]


class FlowContract(ContractBase):
    async def test_a_busy_key_never_runs_more_than_its_limit_and_holds_back_no_other_key(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            started = []
            for n, customer in enumerate(["a", "a", "a", "b"]):
                receipt = await workflows.start(per_customer, input={"gate": name, "customer": customer, "label": f"{customer}{n}"})
                started.append(receipt.run_id)
            await wait_for_status(rt, started[0], "running")
            await wait_for_status(rt, started[3], "running")  # key b is not behind key a's queue
            queued = await wait_for_status(rt, started[1], "queued")
            assert queued.queued_for is not None and queued.queued_for.kind == "slot"
            assert queued.queued_for.key == "a" and queued.queued_for.limit == 1
            GATES[name].set()
            assert sorted([await runs.result(run_id, timeout=10, runtime=rt) for run_id in started]) == ["a0", "a1", "a2", "b3"]
            assert PEAK[f"{name}:a"] == 1 and PEAK[f"{name}:b"] == 1
            assert STARTED[name][:1] == ["a0"] and STARTED[name].index("a1") < STARTED[name].index("a2")

    async def test_higher_priority_runs_take_a_freed_slot_first(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            blocker = await workflows.start(one_at_a_time, input={"gate": name, "customer": "-", "label": "blocker"})
            await wait_for_status(rt, blocker.run_id, "running")
            ids = []
            for label, priority in [("low1", None), ("low2", -5), ("high", 50), ("mid", 10)]:
                receipt = await workflows.start(
                    one_at_a_time, input={"gate": name, "customer": "-", "label": label}, priority=priority
                )
                ids.append(receipt.run_id)
            record = await runs.get(ids[2], runtime=rt)
            assert record is not None and record.priority == 50 and record.status == "queued"
            GATES[name].set()
            for run_id in ids:
                await runs.result(run_id, timeout=10, runtime=rt)
            assert STARTED[name] == ["blocker", "high", "mid", "low1", "low2"]

    async def test_a_rate_limit_holds_starts_to_its_window_and_loses_none(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            receipts = [await workflows.start(rated, input={"gate": name, "customer": "-"}) for _ in range(7)]
            held = None
            with anyio.fail_after(5):
                while held is None:
                    for receipt in receipts:
                        record = await runs.get(receipt.run_id, runtime=rt)
                        if record is not None and record.queued_for is not None and record.queued_for.kind == "rate_limit":
                            held = record
                            break
                    await anyio.sleep(0.02)
            assert held.queued_for is not None and held.queued_for.until is not None
            starts = sorted([await runs.result(r.run_id, timeout=15, runtime=rt) for r in receipts])
            for n in range(len(starts) - 3):
                assert starts[n + 3] - starts[n] >= 0.95, f"4 starts within a second: {starts}"

    async def test_debounced_starts_fold_into_one_run_that_takes_the_last_input(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            receipts = [
                await workflows.start(debounced, input={"gate": name, "customer": "c", "label": f"v{n}"}) for n in range(100)
            ]
            other = await workflows.start(debounced, input={"gate": name, "customer": "d", "label": "other"})
            assert len({receipt.run_id for receipt in receipts}) == 1
            record = await runs.get(receipts[0].run_id, runtime=rt)
            assert record is not None and record.queued_for is not None and record.queued_for.kind == "debounce"
            assert record.debounce_key == "c"
            assert await runs.result(receipts[0].run_id, timeout=10, runtime=rt) == "v99"
            assert await runs.result(other.run_id, timeout=10, runtime=rt) == "other"
            later = await workflows.start(debounced, input={"gate": name, "customer": "c", "label": "later"})
            assert later.run_id != receipts[0].run_id

    async def test_child_runs_and_reruns_of_a_debounced_workflow_are_not_folded(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            parent = await workflows.start(debounce_parent, input={"gate": name, "customer": "c"})
            assert await runs.result(parent.run_id, timeout=10, runtime=rt) == ["child0", "child1"]
            first = await workflows.start(debounced, input={"gate": name, "customer": "c", "label": "once"})
            assert await runs.result(first.run_id, timeout=10, runtime=rt) == "once"
            again = await runs.rerun(first.run_id, runtime=rt)
            assert again.run_id != first.run_id
            record = await runs.get(again.run_id, runtime=rt)
            assert record is not None and record.rerun_of == first.run_id and record.debounce_key is None
            assert await runs.result(again.run_id, timeout=10, runtime=rt) == "once"

    async def test_a_start_repeated_with_its_idempotency_key_after_a_fold_gets_the_same_run(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            first = await workflows.start(debounced, input={"gate": name, "customer": "c", "label": "v1"}, key="k1")
            folded = await workflows.start(debounced, input={"gate": name, "customer": "c", "label": "v2"})
            again = await workflows.start(debounced, input={"gate": name, "customer": "c", "label": "v1"}, key="k1")
            assert first.run_id == folded.run_id == again.run_id
            assert await runs.result(first.run_id, timeout=10, runtime=rt) == "v2"

    async def test_a_key_that_cannot_be_computed_or_a_bad_priority_creates_no_run(self, open_runtime, gate):
        name = gate()
        async with open_runtime(workflows=FLOW_WORKFLOWS) as rt:
            for customer in ("fail", "int", "none"):
                with pytest.raises(InvalidFlowKey):
                    await workflows.start(keyed_badly, input={"gate": name, "customer": customer})
            with pytest.raises(InvalidPriority):
                await workflows.start(one_at_a_time, input={"gate": name, "customer": "-"}, priority=101)
            with pytest.raises(InvalidPriority):
                await workflows.start(one_at_a_time, input={"gate": name, "customer": "-"}, priority=True)  # type: ignore[arg-type]
            with pytest.raises(InvalidSchedule):
                await workflows.start(debounced, input={"gate": name, "customer": "c"}, delay=5)
            page = await runs.list(runtime=rt)
            assert page.runs == []


"""Contract: child runs started with ``ctx.start_child`` and awaited with ``ctx.wait_for``."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from flue_core import RunContext, RunStatus, runs, workflow, workflows
from flue_core.errors import InvalidInput, RunFailed
from flue_core.models import utc_now
from flue_core.testing.base import CALLS, GATES, ContractBase, all_events, greet, wait_for_event, wait_for_status


@workflow(name="contract-square")
async def square(ctx: RunContext, input: dict) -> int:
    return input["n"] * input["n"]


@workflow(name="contract-child-fails")
async def child_fails(ctx: RunContext) -> None:
    raise ValueError("the child broke")


@workflow(name="contract-child-waits")
async def child_waits(ctx: RunContext, input: dict) -> str:
    ctx.emit("waiting", {"gate": input["gate"]})
    await GATES[input["gate"]].wait()
    return "released"


@workflow(name="contract-fan-out")
async def fan_out(ctx: RunContext, input: dict) -> dict[str, Any]:
    children = [await ctx.start_child(square, input={"n": n}) for n in range(input["count"])]
    return {"sum": sum(await ctx.wait_for_all(children)), "children": [c.run_id for c in children]}


@workflow(name="contract-parent-retried", retries=1)
async def parent_retried(ctx: RunContext, input: dict) -> Any:
    child = await ctx.start_child(square, input={"n": 3}, key="the-square")
    CALLS[f"{input['tag']}:parent-attempts"] += 1
    if ctx.attempt == 1:
        raise RuntimeError("the parent fails after starting its child")
    return {"child": child.run_id, "result": await ctx.wait_for(child)}


@workflow(name="contract-parent-of-failure")
async def parent_of_failure(ctx: RunContext) -> str:
    child = await ctx.start_child(child_fails)
    try:
        await ctx.wait_for(child)
    except RunFailed as exc:
        return f"child failed: {exc.details['error']['message']}"
    return "child completed"


@workflow(name="contract-parent-of-waiter")
async def parent_of_waiter(ctx: RunContext, input: dict) -> str:
    child = await ctx.start_child(child_waits, input={"gate": input["gate"]})
    return await ctx.wait_for(child)


@workflow(name="contract-bad-child")
async def bad_child(ctx: RunContext) -> str:
    try:
        await ctx.start_child(greet, input={"nobody": 1})
    except InvalidInput:
        return "refused"
    return "admitted"


@workflow(name="contract-parent-of-two")
async def parent_of_two(ctx: RunContext, input: dict) -> list[Any]:
    done = await ctx.start_child(square, input={"n": 3})
    gated = await ctx.start_child(child_waits, input={"gate": input["gate"]})
    return await ctx.wait_for_all([done, gated])


CHILD_WORKFLOWS = [greet, square, child_fails, child_waits, fan_out, parent_retried, parent_of_failure, parent_of_waiter,
                   parent_of_two, bad_child]  # fmt: skip


class ChildrenContract(ContractBase):
    async def test_fan_out_to_children_and_fan_in_their_results(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS) as rt:
            receipt = await workflows.start(fan_out, input={"count": 4})
            result = await runs.result(receipt.run_id, timeout=10)
            assert result["sum"] == 0 + 1 + 4 + 9
            for child_id in result["children"]:
                child = await runs.get(child_id)
                assert child is not None and child.parent_run_id == receipt.run_id
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types.count("child_started") == 4

    async def test_runs_list_finds_the_children_of_a_run(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS):
            receipt = await workflows.start(fan_out, input={"count": 3})
            result = await runs.result(receipt.run_id, timeout=10)
            listed = await runs.list(parent=receipt.run_id)
            assert [r.run_id for r in listed.runs] == result["children"][::-1]
            assert (await runs.list(parent="run_without_children")).runs == []

    async def test_a_replayed_parent_never_starts_a_second_child(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS):
            tag = uuid.uuid4().hex
            receipt = await workflows.start(parent_retried, input={"tag": tag})
            result = await runs.result(receipt.run_id, timeout=10)
            assert result["result"] == 9 and CALLS[f"{tag}:parent-attempts"] == 2
            children = (await runs.list(parent=receipt.run_id)).runs
            assert [c.run_id for c in children] == [result["child"]]

    async def test_a_child_key_is_scoped_to_its_parent(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS):
            first = await workflows.start(parent_retried, input={"tag": "scope-1"})
            second = await workflows.start(parent_retried, input={"tag": "scope-2"})
            one = await runs.result(first.run_id, timeout=10)
            two = await runs.result(second.run_id, timeout=10)
            assert one["child"] != two["child"]

    async def test_waiting_for_a_failed_child_raises_in_the_parent(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS):
            receipt = await workflows.start(parent_of_failure)
            assert await runs.result(receipt.run_id, timeout=10) == "child failed: the child broke"

    async def test_a_parent_waiting_for_a_child_is_waiting(self, open_runtime, gate):
        async with open_runtime(workflows=CHILD_WORKFLOWS) as rt:
            name = gate()
            receipt = await workflows.start(parent_of_waiter, input={"gate": name})
            record = await wait_for_status(rt, receipt.run_id, "waiting")
            assert record.waiting_for is not None and record.waiting_for.kind == "children"
            (child_id,) = record.waiting_for.run_ids or []
            await wait_for_event(rt, child_id, "waiting")
            GATES[name].set()
            assert await runs.result(receipt.run_id, timeout=10) == "released"

    async def test_prune_keeps_a_finished_child_until_its_parent_has_ended(self, open_runtime, gate):
        async with open_runtime(workflows=CHILD_WORKFLOWS) as rt:
            name = gate()
            receipt = await workflows.start(parent_of_two, input={"gate": name})
            await wait_for_status(rt, receipt.run_id, "waiting")
            by_workflow = {c.workflow: c.run_id for c in (await runs.list(parent=receipt.run_id)).runs}
            done_id, gated_id = by_workflow["contract-square"], by_workflow["contract-child-waits"]
            await wait_for_status(rt, done_id, "completed")
            await wait_for_event(rt, gated_id, "waiting")
            later = utc_now() + timedelta(days=1)  # every run that ended is old enough
            assert await rt.target.store.prune(later) == 0
            assert (await runs.get(done_id)).status == RunStatus.COMPLETED
            GATES[name].set()
            assert await runs.result(receipt.run_id, timeout=10) == [9, "released"]
            assert await rt.target.store.prune(later) == 3
            assert [await runs.get(run_id) for run_id in (receipt.run_id, done_id, gated_id)] == [None, None, None]

    async def test_cancelling_a_parent_cancels_its_unfinished_children(self, open_runtime, gate):
        async with open_runtime(workflows=CHILD_WORKFLOWS) as rt:
            name = gate()
            receipt = await workflows.start(parent_of_waiter, input={"gate": name})
            record = await wait_for_status(rt, receipt.run_id, "waiting")
            (child_id,) = record.waiting_for.run_ids or []  # type: ignore[union-attr]
            await wait_for_event(rt, child_id, "waiting")
            assert (await runs.cancel(receipt.run_id)).status == RunStatus.CANCELLED
            child = await runs.wait(child_id, timeout=5)
            assert child.status == RunStatus.CANCELLED

    async def test_a_child_with_bad_input_is_refused_in_the_parent(self, open_runtime):
        async with open_runtime(workflows=CHILD_WORKFLOWS):
            receipt = await workflows.start(bad_child)
            assert await runs.result(receipt.run_id, timeout=10) == "refused"
            assert (await runs.list(parent=receipt.run_id)).runs == []

    @pytest.mark.parametrize("other", ["run_unknown", "not-a-child"])
    async def test_waiting_for_a_run_that_is_not_a_child_fails_the_run(self, open_runtime, other):
        @workflow(name="contract-wait-stranger")
        async def wait_stranger(ctx: RunContext, input: dict) -> Any:
            return await ctx.wait_for(input["run_id"])

        async with open_runtime(workflows=[*CHILD_WORKFLOWS, wait_stranger]):
            if other == "not-a-child":
                other = (await workflows.start(square, input={"n": 1})).run_id
            record = await runs.wait((await workflows.start(wait_stranger, input={"run_id": other})).run_id, timeout=10)
            assert record.status == RunStatus.FAILED and record.error.type.endswith("StepError")

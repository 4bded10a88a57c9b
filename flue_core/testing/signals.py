"""Contract: signals sent into runs (``runs.signal``) and taken by ``ctx.wait_for_signal``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flue_core import RunContext, RunStatus, runs, workflow, workflows
from flue_core.errors import IdempotencyKeyConflict, InvalidKey, InvalidSignal, RunFinished, RunNotFound, SignalTimeout
from flue_core.testing.base import GATES, ContractBase, all_events, wait_for_event, wait_for_status


class Approval(BaseModel):
    approved: bool
    by: str


@workflow(name="contract-approval", signals={"approval": Approval})
async def approval(ctx: RunContext) -> dict[str, Any]:
    decision = await ctx.wait_for_signal("approval")
    return {"approved": decision.approved, "by": decision.by}


@workflow(name="contract-inbox")
async def inbox(ctx: RunContext, input: dict) -> list[Any]:
    if "gate" in input:
        ctx.emit("waiting", {"gate": input["gate"]})
        await GATES[input["gate"]].wait()
    received = []
    for _ in range(input.get("count", 1)):
        try:
            received.append(await ctx.wait_for_signal("note", timeout=input.get("timeout")))
        except SignalTimeout:
            received.append("timeout")
    return received


@workflow(name="contract-deaf")
async def deaf(ctx: RunContext, input: dict) -> str:
    ctx.emit("waiting", {"gate": input["gate"]})
    await GATES[input["gate"]].wait()
    return "never listened"


SIGNAL_WORKFLOWS = [approval, inbox, deaf]


class SignalsContract(ContractBase):
    async def test_a_signal_resumes_a_waiting_run_with_its_data(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(approval)
            record = await wait_for_status(rt, receipt.run_id, "waiting")
            assert record.waiting_for is not None and record.waiting_for.kind == "signal"
            assert record.waiting_for.name == "approval" and record.wake_at is None
            sent = await runs.signal(receipt.run_id, "approval", {"approved": True, "by": "ada"})
            assert sent.run_id == receipt.run_id and sent.signal_id.startswith("sig_") and not sent.duplicate
            assert await runs.result(receipt.run_id, timeout=10) == {"approved": True, "by": "ada"}

    async def test_a_signal_sent_before_the_wait_is_kept_until_the_run_waits(self, open_runtime, gate):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            name = gate()
            receipt = await workflows.start(inbox, input={"gate": name})
            await wait_for_event(rt, receipt.run_id, "waiting")
            await runs.signal(receipt.run_id, "note", {"n": 1})
            GATES[name].set()
            assert await runs.result(receipt.run_id, timeout=10) == [{"n": 1}]

    async def test_signals_are_delivered_in_order_each_to_one_wait(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 3})
            for n in range(3):
                await runs.signal(receipt.run_id, "note", n)
            assert await runs.result(receipt.run_id, timeout=10) == [0, 1, 2]

    async def test_a_signal_with_a_key_is_delivered_once(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 2, "timeout": 0.5})
            first = await runs.signal(receipt.run_id, "note", "hello", key="k1")
            again = await runs.signal(receipt.run_id, "note", "hello", key="k1")
            assert again.duplicate and again.signal_id == first.signal_id
            assert await runs.result(receipt.run_id, timeout=10) == ["hello", "timeout"]

    async def test_a_repeated_keyed_signal_gets_the_same_answer_after_the_run_ended(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 1})
            first = await runs.signal(receipt.run_id, "note", "only", key="once")
            await runs.wait(receipt.run_id, timeout=10)
            again = await runs.signal(receipt.run_id, "note", "only", key="once")
            assert again.duplicate and again.signal_id == first.signal_id
            with pytest.raises(RunFinished):
                await runs.signal(receipt.run_id, "note", "only", key="another")

    async def test_a_reused_signal_key_with_other_data_is_a_conflict(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 1})
            await runs.signal(receipt.run_id, "note", "a", key="k")
            with pytest.raises(IdempotencyKeyConflict):
                await runs.signal(receipt.run_id, "note", "b", key="k")
            assert await runs.result(receipt.run_id, timeout=10) == ["a"]

    async def test_a_wait_for_a_signal_times_out(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(inbox, input={"count": 1, "timeout": 0.2})
            assert await runs.result(receipt.run_id, timeout=10) == ["timeout"]
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert "signal_timeout" in types and "signal_delivered" not in types

    async def test_a_signal_after_a_timeout_waits_for_the_next_wait(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(inbox, input={"count": 2, "timeout": 0.3})
            await wait_for_event(rt, receipt.run_id, "signal_timeout", timeout=10)  # the second wait is next
            await runs.signal(receipt.run_id, "note", "late")
            assert await runs.result(receipt.run_id, timeout=10) == ["timeout", "late"]

    async def test_signals_and_their_delivery_appear_in_the_stream(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(approval)
            await wait_for_status(rt, receipt.run_id, "waiting")
            sent = await runs.signal(receipt.run_id, "approval", {"approved": False, "by": "bo"}, key="k")
            received = await wait_for_event(rt, receipt.run_id, "signal_received")
            assert received.data["signalId"] == sent.signal_id and received.data["name"] == "approval"
            assert received.data["data"] == {"approved": False, "by": "bo"} and received.data["key"] == "k"
            await runs.result(receipt.run_id, timeout=10)
            events = await all_events(rt, receipt.run_id)
            types = [e.type for e in events]
            assert types == [
                "run_queued", "run_start", "run_waiting", "signal_received", "run_resume", "signal_delivered", "run_end"
            ]  # fmt: skip
            assert events[5].data == {"signalId": sent.signal_id, "name": "approval"}
            assert [e.index for e in events] == list(range(len(events)))

    async def test_a_signal_to_a_run_that_never_waits_for_it_is_announced_before_its_end(self, open_runtime, gate):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            name = gate()
            receipt = await workflows.start(deaf, input={"gate": name})
            await wait_for_event(rt, receipt.run_id, "waiting")
            await runs.signal(receipt.run_id, "ignored", {"x": 1})
            GATES[name].set()
            await runs.result(receipt.run_id, timeout=10)
            events = await all_events(rt, receipt.run_id)
            assert [e.type for e in events][-2:] == ["signal_received", "run_end"]
            assert [e.index for e in events] == list(range(len(events)))

    async def test_a_signal_to_an_unknown_run_is_refused(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            with pytest.raises(RunNotFound):
                await runs.signal("run_nobody", "note", 1)

    async def test_a_signal_to_a_finished_run_is_refused(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 1, "timeout": 0.05})
            await runs.wait(receipt.run_id, timeout=10)
            with pytest.raises(RunFinished) as caught:
                await runs.signal(receipt.run_id, "note", 1)
            assert caught.value.details["status"] == "completed"

    @pytest.mark.parametrize(
        ("name", "data", "error"),
        [
            ("approval", {"approved": "maybe", "by": "x"}, InvalidSignal),
            ("approval", {"by": "x"}, InvalidSignal),
            ("other", {"approved": True, "by": "x"}, InvalidSignal),
            ("9bad", {}, InvalidSignal),
            ("", {}, InvalidSignal),
            ("approval\n", {"approved": True, "by": "x"}, InvalidSignal),
            ("approval", {"approved": True, "by": float("nan")}, InvalidSignal),
        ],
    )
    async def test_a_bad_signal_is_refused_and_changes_nothing(self, open_runtime, name, data, error):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(approval)
            await wait_for_status(rt, receipt.run_id, "waiting")
            before = [e.type for e in await all_events(rt, receipt.run_id)]
            with pytest.raises(error):
                await runs.signal(receipt.run_id, name, data)
            assert [e.type for e in await all_events(rt, receipt.run_id)] == before
            assert (await runs.get(receipt.run_id)).status == RunStatus.WAITING
            await runs.cancel(receipt.run_id)

    async def test_a_signal_key_must_be_a_short_string(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            receipt = await workflows.start(inbox, input={"count": 1})
            for key in ("", "k" * 257, 5):
                with pytest.raises(InvalidKey):
                    await runs.signal(receipt.run_id, "note", 1, key=key)  # type: ignore[arg-type]
            await runs.cancel(receipt.run_id)

    async def test_a_waiting_run_resumes_after_a_restart_when_signalled(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as rt:
            receipt = await workflows.start(approval)
            await wait_for_status(rt, receipt.run_id, "waiting")
        async with open_runtime(workflows=SIGNAL_WORKFLOWS):
            await runs.signal(receipt.run_id, "approval", {"approved": True, "by": "later"})
            assert await runs.result(receipt.run_id, timeout=10) == {"approved": True, "by": "later"}

    async def test_a_signal_sent_from_another_runtime_reaches_the_run(self, open_runtime):
        async with open_runtime(workflows=SIGNAL_WORKFLOWS) as first, open_runtime(workflows=SIGNAL_WORKFLOWS) as second:
            receipt = await workflows.start(approval, runtime=first)
            await wait_for_status(first, receipt.run_id, "waiting")
            await runs.signal(receipt.run_id, "approval", {"approved": True, "by": "two"}, runtime=second)
            assert await runs.result(receipt.run_id, timeout=10, runtime=first) == {"approved": True, "by": "two"}

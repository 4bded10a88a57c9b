"""Contract: a run's life (status, results, errors, retries with step replay, timeouts, cancellation)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from flue_core import RunCancelled, RunContext, RunFailed, RunStatus, runs, workflow, workflows
from flue_core.models import utc_now
from flue_core.store import Outcome
from flue_core.testing.base import CALLS, CONTRACT_WORKFLOWS, GATES, ContractBase, all_events, fail, flaky, gated, greet, wait_for_event


class Report(BaseModel):
    title: str
    pages: int


@workflow(name="contract-model-result")
async def model_result(ctx: RunContext) -> Report:
    return Report(title="t", pages=2)


@workflow(name="contract-bad-result")
async def bad_result(ctx: RunContext) -> Any:
    return {"when": object()}


@workflow(name="contract-slow", timeout=0.2)
async def slow(ctx: RunContext) -> None:
    await anyio.sleep(10)


@workflow(name="contract-twice")
async def twice(ctx: RunContext) -> list[int]:
    return [await ctx.step("same", lambda value=value: value) for value in (1, 2)]


@workflow(name="contract-bad-step")
async def bad_step(ctx: RunContext) -> None:
    await ctx.step("bytes", lambda: b"raw")


@workflow(name="contract-cancellable")
async def cancellable(ctx: RunContext) -> str:
    ctx.emit("waiting")
    try:
        await anyio.sleep(10)
    finally:
        CALLS[f"{ctx.run_id}:cancel_requested"] = int(ctx.cancel_requested)
    return "not cancelled"


EXTRA = [model_result, bad_result, slow, twice, bad_step, cancellable]


class _NeverSchedules:
    """Keeps runs queued: accepts them without handing them to any executor."""

    from flue_core import hookimpl as _hookimpl

    @_hookimpl(tryfirst=True)
    def flue_schedule_run(self, run: Any, runtime: Any) -> bool:
        return True


class LifecycleContract(ContractBase):
    async def test_a_completed_run_has_a_final_record(self, open_runtime):
        async with open_runtime():
            receipt = await workflows.start(greet, input={"name": "ada"})
            record = await runs.wait(receipt.run_id, timeout=5)
            assert record.status == RunStatus.COMPLETED
            assert record.result == {"greeting": "hello ada"}
            assert record.attempt == 1 and record.error is None
            assert record.created_at <= record.started_at <= record.ended_at
            assert record.duration_ms is not None and record.duration_ms >= 0

    async def test_a_failing_workflow_ends_failed_with_its_error(self, open_runtime):
        async with open_runtime() as rt:
            receipt = await workflows.start(fail)
            with pytest.raises(RunFailed) as caught:
                await runs.result(receipt.run_id, timeout=5)
            assert caught.value.details["error"]["code"] == "workflow_error"
            record = await runs.get(receipt.run_id)
            assert record is not None and record.status == RunStatus.FAILED
            assert record.error is not None
            assert record.error.type == "ValueError" and record.error.message == "report generation failed"
            assert "report generation failed" in (record.error.traceback or "")
            end = (await all_events(rt, receipt.run_id))[-1]
            assert end.type == "run_end" and end.data["status"] == "failed"
            assert end.data["error"]["code"] == "workflow_error"

    async def test_pydantic_results_are_stored_as_json(self, open_runtime):
        async with open_runtime(workflows=EXTRA):
            receipt = await workflows.start(model_result)
            assert await runs.result(receipt.run_id, timeout=5) == {"title": "t", "pages": 2}

    async def test_a_result_json_cannot_carry_fails_the_run(self, open_runtime):
        async with open_runtime(workflows=EXTRA):
            receipt = await workflows.start(bad_result)
            record = await runs.wait(receipt.run_id, timeout=5)
            assert record.status == RunStatus.FAILED and record.error.code == "output_not_json"

    async def test_the_status_is_running_while_the_workflow_executes(self, open_runtime, gate):
        async with open_runtime() as rt:
            name = gate()
            receipt = await workflows.start(gated, input={"gate": name})
            waiting = await wait_for_event(rt, receipt.run_id, "waiting")
            assert waiting.data == {"gate": name}
            record = await runs.get(receipt.run_id)
            assert record is not None and record.status == RunStatus.RUNNING and record.attempt == 1
            GATES[name].set()
            assert await runs.result(receipt.run_id, timeout=5) == "released"

    async def test_failed_attempts_are_retried_and_completed_steps_replayed(self, open_runtime, gate):
        async with open_runtime() as rt:
            name = gate()
            receipt = await workflows.start(flaky, input={"gate": name, "fail_first": 2})
            assert await runs.result(receipt.run_id, timeout=10) == {"attempt": 3, "expensive": 1}
            assert CALLS[f"{name}:expensive"] == 1  # the step ran once; attempts 2 and 3 replayed it
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types.count("run_start") == 3 and types.count("run_retry") == 2
            steps = [e.data for e in await all_events(rt, receipt.run_id) if e.type == "step"]
            assert [s["replayed"] for s in steps] == [False, True, True]

    async def test_retries_run_out_and_the_run_fails(self, open_runtime, gate):
        async with open_runtime():
            name = gate()
            receipt = await workflows.start(flaky, input={"gate": name, "fail_first": 5})
            record = await runs.wait(receipt.run_id, timeout=10)
            assert record.status == RunStatus.FAILED and record.attempt == 3
            assert record.error.message == "attempt 3 failed"

    async def test_an_attempt_past_its_timeout_fails(self, open_runtime):
        async with open_runtime(workflows=EXTRA):
            receipt = await workflows.start(slow)
            record = await runs.wait(receipt.run_id, timeout=5)
            assert record.status == RunStatus.FAILED and record.error.code == "run_timeout"

    async def test_a_step_name_used_again_is_numbered_by_occurrence(self, open_runtime):
        async with open_runtime(workflows=EXTRA) as rt:
            receipt = await workflows.start(twice)
            assert await runs.result(receipt.run_id, timeout=5) == [1, 2]
            steps = [e.data for e in await all_events(rt, receipt.run_id) if e.type == "step"]
            assert [(s["name"], s.get("key")) for s in steps] == [("same", None), ("same", "same#2")]
            assert await rt.target.store.load_steps(receipt.run_id) == {"same": "1", "same#2": "2"}

    async def test_a_step_result_json_cannot_carry_fails_the_run(self, open_runtime):
        async with open_runtime(workflows=EXTRA):
            record = await runs.wait((await workflows.start(bad_step)).run_id, timeout=5)
            assert record.status == RunStatus.FAILED and "JSON" in record.error.message

    async def test_cancelling_a_running_run(self, open_runtime):
        async with open_runtime(workflows=EXTRA) as rt:
            receipt = await workflows.start(cancellable)
            await wait_for_event(rt, receipt.run_id, "waiting")
            record = await runs.cancel(receipt.run_id)
            assert record.status == RunStatus.CANCELLED
            assert CALLS[f"{receipt.run_id}:cancel_requested"] == 1
            events = await all_events(rt, receipt.run_id)
            assert events[-1].type == "run_end" and events[-1].data["status"] == "cancelled"
            with pytest.raises(RunCancelled):
                await runs.result(receipt.run_id, timeout=1)

    async def test_a_cancel_from_another_runtime_stops_the_run_within_a_second(self, open_runtime):
        async with open_runtime(workflows=EXTRA) as executing, open_runtime(workflows=EXTRA) as other:
            receipt = await workflows.start(cancellable, runtime=executing)
            await wait_for_event(executing, receipt.run_id, "waiting")
            asked = anyio.current_time()
            record = await runs.cancel(receipt.run_id, wait_for=5, runtime=other)
            assert record.status == RunStatus.CANCELLED
            assert anyio.current_time() - asked < 1.0

    async def test_cancelling_a_queued_run_ends_it_at_once(self, open_runtime):
        async with open_runtime(workflows=CONTRACT_WORKFLOWS, plugins=[_NeverSchedules()]) as rt:
            receipt = await workflows.start(greet, input={"name": "q"})
            assert (await runs.get(receipt.run_id)).status == RunStatus.QUEUED
            record = await runs.cancel(receipt.run_id)
            assert record.status == RunStatus.CANCELLED and record.started_at is None
            assert [e.type for e in await all_events(rt, receipt.run_id)] == ["run_queued", "run_end"]

    async def test_cancelling_an_ended_run_changes_nothing(self, open_runtime):
        async with open_runtime():
            receipt = await workflows.start(greet, input={"name": "done"})
            final = await runs.wait(receipt.run_id, timeout=5)
            assert await runs.cancel(receipt.run_id) == final

    async def test_the_first_terminal_write_wins(self, open_runtime):
        async with open_runtime() as rt:
            receipt = await workflows.start(greet, input={"name": "w"})
            final = await runs.wait(receipt.run_id, timeout=5)
            again = await rt.target.store.finish(receipt.run_id, Outcome(RunStatus.FAILED, utc_now()))
            assert again == final
            events = await all_events(rt, receipt.run_id)
            assert [e.type for e in events].count("run_end") == 1

    async def test_no_events_are_stored_after_run_end(self, open_runtime):
        leaked: list[RunContext] = []

        @workflow(name="contract-leaky")
        async def leaky(ctx: RunContext) -> None:
            leaked.append(ctx)

        async with open_runtime(workflows=[leaky]) as rt:
            receipt = await workflows.start(leaky)
            await runs.wait(receipt.run_id, timeout=5)
            leaked[0].emit("late", {"x": 1})
            await rt.target.store.flush()
            assert [e.type for e in await all_events(rt, receipt.run_id)][-1] == "run_end"


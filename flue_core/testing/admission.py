"""Contract: admission (validation before storage, policies, identity, idempotency, failure rule)."""

from __future__ import annotations

import math
import re
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from flue_core import (
    AdmissionDenied,
    IdempotencyKeyConflict,
    InputNotSerializable,
    InvalidInput,
    RunStatus,
    SchedulingFailed,
    UnexpectedInput,
    WorkflowNotFound,
    hookimpl,
    runs,
    workflow,
    workflows,
)
from flue_core.admission import AdmissionRequest
from flue_core.errors import ConfigurationError, InvalidKey, RunIdConflict
from flue_core.testing.base import RUN_ID, ContractBase, Greeting, all_events, gated, greet, no_input


class Measure(BaseModel):
    value: float


@workflow(name="contract-measured")
async def measured(ctx: Any, input: Measure) -> float:
    return input.value


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[AdmissionRequest] = []

    @hookimpl
    async def flue_check_admission(self, request: AdmissionRequest) -> None:
        self.requests.append(request)
        if request.input and request.input.get("name") == "mallory":
            raise AdmissionDenied("mallory may not be greeted")


class _BrokenScheduler:
    @hookimpl(tryfirst=True)
    def flue_schedule_run(self, run: Any, runtime: Any) -> bool:
        raise RuntimeError("executor unavailable")


class _FixedIds:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @hookimpl
    def flue_generate_run_id(self, workflow: str) -> str:
        return self.run_id


class AdmissionContract(ContractBase):
    async def test_start_returns_a_receipt_at_admission(self, open_runtime):
        async with open_runtime() as rt:
            receipt = await workflows.start(greet, input={"name": "ada"})
            assert re.match(RUN_ID, receipt.run_id)
            assert receipt.workflow == "contract-greet"
            assert receipt.stream_url == f"/runs/{receipt.run_id}"
            assert receipt.offset == "-1"
            assert await runs.result(receipt.run_id, timeout=5) == {"greeting": "hello ada"}
            assert rt.registry.get("contract-greet") is greet

    async def test_start_returns_before_the_run_finishes(self, open_runtime, gate):
        async with open_runtime() as rt:
            name = gate()
            receipt = await workflows.start(gated, input={"gate": name})
            record = await runs.get(receipt.run_id)
            assert record is not None and record.status in (RunStatus.QUEUED, RunStatus.RUNNING)
            from flue_core.testing.base import GATES

            GATES[name].set()
            assert await runs.result(receipt.run_id, timeout=5) == "released"
            assert rt.running

    async def test_start_accepts_the_workflow_name(self, open_runtime):
        async with open_runtime():
            receipt = await workflows.start("contract-greet", input={"name": "bo"})
            assert await runs.result(receipt.run_id, timeout=5) == {"greeting": "hello bo"}

    async def test_start_of_an_unknown_workflow_creates_no_run(self, open_runtime):
        async with open_runtime():
            with pytest.raises(WorkflowNotFound) as caught:
                await workflows.start("no-such-workflow", input={})
            assert caught.value.code == "workflow_not_found"
            assert (await runs.list()).runs == []

    async def test_start_of_a_look_alike_workflow_object_is_refused(self, open_runtime):
        @workflow(name="contract-greet")
        async def impostor(ctx, input: Greeting) -> None:
            return None

        async with open_runtime():
            with pytest.raises(WorkflowNotFound):
                await workflows.start(impostor, input={"name": "x"})
            assert (await runs.list()).runs == []

    async def test_start_with_invalid_input_creates_no_run(self, open_runtime):
        async with open_runtime():
            with pytest.raises(InvalidInput) as caught:
                await workflows.start(greet, input={"name": 3, "times": "many"})
            assert caught.value.code == "invalid_input"
            locations = {tuple(error["loc"]) for error in caught.value.details["errors"]}
            assert locations == {("name",), ("times",)}
            assert (await runs.list()).runs == []

    async def test_missing_input_is_validated_as_an_empty_object(self, open_runtime):
        async with open_runtime():
            with pytest.raises(InvalidInput) as caught:
                await workflows.start(greet)
            assert [error["loc"] for error in caught.value.details["errors"]] == [["name"]]

    async def test_input_for_a_workflow_without_input_is_refused(self, open_runtime):
        async with open_runtime():
            with pytest.raises(UnexpectedInput) as caught:
                await workflows.start(no_input, input={"x": 1})
            assert caught.value.code == "unexpected_input"
            assert (await runs.list()).runs == []
            receipt = await workflows.start(no_input)
            assert await runs.result(receipt.run_id, timeout=5) == "done"

    @pytest.mark.parametrize(
        "value",
        [b"bytes", {1, 2}, math.nan, math.inf, object(), {"nested": [1, {"deep": b"x"}]}],
        ids=["bytes", "set", "nan", "inf", "object", "nested-bytes"],
    )
    async def test_input_that_is_not_json_creates_no_run(self, open_runtime, value):
        async with open_runtime():
            with pytest.raises(InputNotSerializable) as caught:
                await workflows.start(greet, input={"name": "x", "extra": value})
            assert caught.value.code == "input_not_json"
            assert (await runs.list()).runs == []

    async def test_input_with_a_cycle_creates_no_run(self, open_runtime):
        cyclic: dict[str, Any] = {"name": "x"}
        cyclic["self"] = cyclic
        async with open_runtime():
            with pytest.raises(InputNotSerializable):
                await workflows.start(greet, input=cyclic)
            assert (await runs.list()).runs == []

    async def test_input_is_snapshotted_at_admission(self, open_runtime, gate):
        async with open_runtime():
            value = {"name": "ada", "times": 2}
            receipt = await workflows.start(greet, input=value)
            value["name"] = "mutated"
            record = await runs.get(receipt.run_id)
            assert record is not None and record.input == {"name": "ada", "times": 2}
            assert await runs.result(receipt.run_id, timeout=5) == {"greeting": "hello ada hello ada"}

    async def test_input_model_instances_are_accepted(self, open_runtime):
        async with open_runtime():
            receipt = await workflows.start(greet, input=Greeting(name="cy"))
            record = await runs.get(receipt.run_id)
            assert record is not None and record.input == {"name": "cy", "times": 1}

    async def test_admission_policy_may_refuse_and_no_run_exists(self, open_runtime):
        recorder = _Recorder()
        async with open_runtime(plugins=[recorder]):
            with pytest.raises(AdmissionDenied) as caught:
                await workflows.start(greet, input={"name": "mallory"})
            assert caught.value.code == "admission_denied"
            assert (await runs.list()).runs == []
            await workflows.start(greet, input={"name": "alice"})
            request = recorder.requests[-1]
            assert request.workflow is greet
            assert request.input == {"name": "alice", "times": 1}
            assert request.source == "python"

    async def test_same_key_returns_the_same_receipt_and_one_run(self, open_runtime):
        async with open_runtime():
            first = await workflows.start(greet, input={"name": "k"}, key="order-1")
            second = await workflows.start(greet, input={"name": "k"}, key="order-1")
            assert first == second
            assert len((await runs.list()).runs) == 1
            events = await all_events_after_result(first.run_id)
            assert [e.type for e in events].count("run_start") == 1

    async def test_concurrent_starts_with_one_key_create_one_run(self, open_runtime):
        async with open_runtime():
            receipts = []

            async def start() -> None:
                receipts.append(await workflows.start(greet, input={"name": "k"}, key="same"))

            async with anyio.create_task_group() as tasks:
                for _ in range(25):
                    tasks.start_soon(start)
            assert len({r.run_id for r in receipts}) == 1
            assert len((await runs.list()).runs) == 1

    async def test_same_key_with_other_input_is_a_conflict(self, open_runtime):
        async with open_runtime():
            first = await workflows.start(greet, input={"name": "a"}, key="k1")
            with pytest.raises(IdempotencyKeyConflict) as caught:
                await workflows.start(greet, input={"name": "b"}, key="k1")
            assert caught.value.details["run_id"] == first.run_id
            assert len((await runs.list()).runs) == 1

    async def test_keys_are_scoped_to_their_workflow(self, open_runtime):
        async with open_runtime():
            a = await workflows.start(greet, input={"name": "a"}, key="shared")
            b = await workflows.start(no_input, key="shared")
            assert a.run_id != b.run_id

    @pytest.mark.parametrize("key", ["", "x" * 257, 42])
    async def test_malformed_keys_are_refused(self, open_runtime, key):
        async with open_runtime():
            with pytest.raises(InvalidKey):
                await workflows.start(greet, input={"name": "a"}, key=key)
            assert (await runs.list()).runs == []

    async def test_a_scheduling_failure_ends_the_run_and_raises(self, open_runtime):
        async with open_runtime(plugins=[_BrokenScheduler()]) as rt:
            with pytest.raises(SchedulingFailed) as caught:
                await workflows.start(greet, input={"name": "a"})
            run_id = caught.value.details["run_id"]
            record = await runs.get(run_id)
            assert record is not None and record.status == RunStatus.FAILED
            assert record.error is not None and record.error.code == "scheduling_failed"
            assert "executor unavailable" in record.error.message
            events = await all_events(rt, run_id)
            assert [e.type for e in events] == ["run_queued", "run_end"]
            assert events[-1].data["status"] == "failed"
            page = await rt.target.store.read(run_id, -1, 10)
            assert page is not None and page.closed

    async def test_run_ids_come_from_the_decision_hook(self, open_runtime):
        async with open_runtime(plugins=[_FixedIds("custom-id_1")]):
            receipt = await workflows.start(no_input)
            assert receipt.run_id == "custom-id_1"
            assert await runs.result("custom-id_1", timeout=5) == "done"

    async def test_a_malformed_run_id_from_a_hook_creates_no_run(self, open_runtime):
        async with open_runtime(plugins=[_FixedIds("has space")]):
            with pytest.raises(ConfigurationError):
                await workflows.start(no_input)
            assert (await runs.list()).runs == []

    async def test_a_run_id_taken_by_another_run_is_refused(self, open_runtime):
        async with open_runtime(plugins=[_FixedIds("run_taken")]):
            await workflows.start(no_input)
            with pytest.raises(RunIdConflict) as caught:
                await workflows.start(greet, input={"name": "second"})
            assert caught.value.code == "run_id_conflict"
            record = await runs.wait("run_taken", timeout=5)
            assert record.workflow == "contract-noinput" and record.result == "done"
            assert len((await runs.list()).runs) == 1

    async def test_a_caller_cancelled_during_admission_leaves_no_run_behind(self, open_runtime):
        async with open_runtime():
            for attempt in range(40):
                with anyio.move_on_after(attempt * 0.0001):
                    await workflows.start(no_input)
            with anyio.fail_after(10):
                while True:
                    page = await runs.list(limit=100)
                    if all(record.finished for record in page.runs):
                        break
                    await anyio.sleep(0.02)
            assert all(record.status == RunStatus.COMPLETED for record in page.runs)

    @pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
    async def test_numbers_json_cannot_carry_are_refused_after_coercion(self, open_runtime, value):
        async with open_runtime(workflows=[measured]):
            with pytest.raises(InputNotSerializable):
                await workflows.start(measured, input={"value": value})
            assert (await runs.list()).runs == []

    async def test_run_ids_are_unique_and_sort_in_admission_order(self, open_runtime):
        async with open_runtime():
            ids = [(await workflows.start(no_input)).run_id for _ in range(50)]
            assert len(set(ids)) == 50
            assert ids == sorted(ids)


async def all_events_after_result(run_id: str) -> list:
    await runs.wait(run_id, timeout=5)
    return [event async for event in runs.events(run_id)]

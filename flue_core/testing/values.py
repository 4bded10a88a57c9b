"""Contract: values a run carries are copied exactly or refused with a typed error, never changed.

Every entry a value takes — ``start()`` input and key, ``ctx.emit``/``log``/``progress`` data,
``ctx.step`` names and results, workflow results — refuses what JSON text cannot carry: strings that
are not valid Unicode (lone surrogates), NaN and infinities (also where pydantic would write ``null``),
integers past the conversion limit, nesting deeper than ``MAX_DEPTH`` (also through pydantic models),
events larger than ``MAX_EVENT_SIZE``. A refused input creates no run; one run's event the store
cannot write costs no other run anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from flue_core import InputNotSerializable, RunContext, RunStatus, runs, workflow, workflows
from flue_core.errors import FlueError, InvalidKey
from flue_core.limits import MAX_DEPTH, MAX_EVENT_SIZE
from flue_core.store import NewEvent, NewRun, Outcome
from flue_core.testing.base import ContractBase, all_events

LONE_SURROGATE = "caf\udce9"  # what b"caf\xe9".decode("utf-8", errors="surrogateescape") gives


def nested(depth: int, leaf: Any = 0, *, kind: str = "list") -> Any:
    """``depth`` levels of lists (or objects) around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


class Node(BaseModel):
    child: Node | None = None


class Reading(BaseModel):
    value: float
    extra: dict[str, Any] = {}


@workflow(name="contract-echo")
async def echo(ctx: RunContext, input: Any) -> Any:
    return input


@workflow(name="contract-echo-dict")
async def echo_dict(ctx: RunContext, input: dict) -> Any:
    return input


@workflow(name="contract-echo-list")
async def echo_list(ctx: RunContext, input: list) -> Any:
    return input


@workflow(name="contract-floats")
async def floats(ctx: RunContext, input: dict[str, float]) -> Any:
    return input


@workflow(name="contract-tree")
async def tree(ctx: RunContext, input: Node) -> Any:
    return input


#: What ``misbehave`` does, by action: each must raise a typed error at the call.
ACTIONS = {
    "emit-value": lambda ctx: ctx.emit("bad", {"text": LONE_SURROGATE}),
    "emit-key": lambda ctx: ctx.emit("bad", {LONE_SURROGATE: 1}),
    "emit-nan": lambda ctx: ctx.emit("bad", {"x": float("nan")}),
    "emit-model-nan": lambda ctx: ctx.emit("bad", Reading(value=1, extra={"x": float("inf")})),
    "emit-deep": lambda ctx: ctx.emit("bad", {"deep": nested(MAX_DEPTH)}),
    "emit-large": lambda ctx: ctx.emit("bad", {"text": "x" * MAX_EVENT_SIZE}),
    "emit-huge-int": lambda ctx: ctx.emit("bad", {"n": 10**5000}),
    "log-message": lambda ctx: ctx.log.info(LONE_SURROGATE),
    "log-attribute": lambda ctx: ctx.log.info("fine", detail=LONE_SURROGATE),
    "progress-message": lambda ctx: ctx.progress(1, 2, message=LONE_SURROGATE),
    "step-name": lambda ctx: ctx.step(LONE_SURROGATE, lambda: 1),
    "step-result": lambda ctx: ctx.step("text", lambda: LONE_SURROGATE),
    "step-deep": lambda ctx: ctx.step("deep", lambda: nested(MAX_DEPTH + 1)),
    "step-model-nan": lambda ctx: ctx.step("model", lambda: Reading(value=1, extra={"x": float("nan")})),
}


@workflow(name="contract-misbehave")
async def misbehave(ctx: RunContext, input: dict) -> dict[str, Any]:
    """Makes one bad call (``input["action"]``) and reports the code of the error it raised."""
    try:
        outcome = ACTIONS[input["action"]](ctx)
        if hasattr(outcome, "__await__"):
            await outcome
    except FlueError as exc:
        ctx.emit("after", {"ok": True})  # the run goes on normally after a refused call
        return {"code": exc.code}
    return {"code": None}


@workflow(name="contract-bad-result")
async def bad_result(ctx: RunContext, input: dict) -> Any:
    return Reading(value=1, extra={"x": float(input["value"])})


VALUE_WORKFLOWS = [echo, echo_dict, echo_list, floats, tree, misbehave, bad_result]

#: Inputs no entry may admit, with the workflow they are given to.
REFUSED_INPUTS = {
    "surrogate-value": (echo, {"text": LONE_SURROGATE}),
    "surrogate-key": (echo, {LONE_SURROGATE: 1}),
    "surrogate-in-list": (echo_list, ["ok", "\ud800"]),
    "surrogate-top-level": (echo, "\udfff"),
    "nan-in-dict": (echo_dict, {"x": float("nan")}),
    "infinity-in-list": (echo_list, [1, float("inf")]),
    "minus-infinity-in-any": (echo, {"x": [float("-inf")]}),
    "nan-string-coerced": (floats, {"x": "NaN"}),
    "infinity-string-coerced": (floats, {"x": "Infinity"}),
    "huge-float-string-coerced": (floats, {"x": "1e400"}),
    "too-deep-list": (echo, nested(MAX_DEPTH + 1)),
    "too-deep-dict": (echo_dict, nested(MAX_DEPTH + 1, kind="dict")),
    "far-too-deep": (echo, nested(5000)),
    "too-deep-model-as-dict": (tree, nested(300, None, kind="dict")),
    "huge-int": (echo, {"n": 10**5000}),
    "model-hiding-nan": (echo, Reading(value=1, extra={"x": float("nan")})),
}


def deep_node(depth: int) -> Node:
    node = None
    for _ in range(depth):
        node = Node(child=node)
    assert node is not None
    return node


class ValuesContract(ContractBase):
    @pytest.fixture
    def open_values(self, open_runtime: Any) -> Any:
        return lambda: open_runtime(workflows=VALUE_WORKFLOWS)

    @pytest.mark.parametrize("case", sorted(REFUSED_INPUTS))
    async def test_input_json_text_cannot_carry_is_refused_and_creates_no_run(self, open_values, case):
        wf, value = REFUSED_INPUTS[case]
        async with open_values() as rt:
            with pytest.raises(InputNotSerializable) as raised:
                await workflows.start(wf, input=value)
            assert raised.value.details["path"].startswith("input")
            assert (await runs.list(runtime=rt)).runs == []

    @pytest.mark.parametrize("depth", [200, 300, 1000])
    async def test_a_model_instance_nested_too_deeply_is_refused_and_creates_no_run(self, open_values, depth):
        async with open_values() as rt:
            with pytest.raises(InputNotSerializable):
                await workflows.start(tree, input=deep_node(depth))
            assert (await runs.list(runtime=rt)).runs == []

    @pytest.mark.parametrize("key", ["\ud800", "key-\udcff", "\udc00" * 10])
    async def test_a_key_that_is_not_valid_unicode_is_refused_and_creates_no_run(self, open_values, key):
        async with open_values() as rt:
            with pytest.raises(InvalidKey):
                await workflows.start(echo, input={"a": 1}, key=key)
            assert (await runs.list(runtime=rt)).runs == []

    @pytest.mark.parametrize(
        "value",
        [
            nested(MAX_DEPTH),
            nested(MAX_DEPTH - 2, {"deepest": [1.5, -0.0, None, True]}, kind="dict"),
            {"digits": 10**4299, "negative": -(10**4299), "tiny": 5e-324, "big": 1.7976931348623157e308},
            {"text": "\x00\x1f\u2028\u2029\ufeff\U0010ffff\ud7ff\ue000", "\x00key": "nul in a key"},
            {"": "", "a.b": {"[0]": []}},
        ],
        ids=["deepest-list", "deepest-dict", "numbers", "control-and-edge-characters", "odd-keys"],
    )
    async def test_input_at_the_limits_is_admitted_and_read_back_unchanged(self, open_values, value):
        async with open_values() as rt:
            receipt = await workflows.start(echo, input=value)
            with anyio.fail_after(10):
                assert await runs.result(receipt.run_id) == value
            record = await runs.get(receipt.run_id, runtime=rt)
            assert record is not None and record.input == value
            first = (await all_events(rt, receipt.run_id))[0]
            assert first.data["input"] == value

    async def test_a_key_with_control_characters_is_kept_unchanged(self, open_values):
        key = "tick\x00\x01\n2024-01-01T00:00:00Z\u2028"
        async with open_values() as rt:
            receipt = await workflows.start(echo, input={"a": 1}, key=key)
            again = await workflows.start(echo, input={"a": 1}, key=key)
            assert again.run_id == receipt.run_id
            record = await runs.get(receipt.run_id, runtime=rt)
            assert record is not None and record.key == key
            assert len((await runs.list(runtime=rt)).runs) == 1

    @pytest.mark.parametrize(
        ("action", "code"),
        [(action, "step_error" if action.startswith("step") else "invalid_event") for action in sorted(ACTIONS)],
    )
    async def test_a_value_an_event_or_step_cannot_carry_is_refused_at_the_call(self, open_values, action, code):
        async with open_values() as rt:
            receipt = await workflows.start(misbehave, input={"action": action})
            with anyio.fail_after(10):
                assert await runs.result(receipt.run_id) == {"code": code}
            types = [event.type for event in await all_events(rt, receipt.run_id)]
            assert types[-2:] == ["after", "run_end"]
            assert "bad" not in types

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
    async def test_a_result_hiding_a_non_finite_number_fails_the_run(self, open_values, value):
        async with open_values():
            receipt = await workflows.start(bad_result, input={"value": value})
            with anyio.fail_after(10):
                record = await runs.wait(receipt.run_id)
            assert record.status == RunStatus.FAILED
            assert record.error is not None and record.error.code == "output_not_json"

    async def test_an_event_the_store_cannot_write_costs_other_runs_nothing(self, open_values):
        """Below ``ctx.emit``'s checks: events of several runs reach the store in one go, one of them
        not valid Unicode. The other runs' events are all stored, and every run can still be ended."""
        async with open_values() as rt:
            store = rt.target.store
            ids = [f"run_values_{i}" for i in range(3)]
            now = datetime.now(UTC)
            for run_id in ids:  # a workflow this runtime lacks: nobody executes or adopts these runs
                first = NewEvent(0, "run_queued", {"workflow": "contract-elsewhere"}, now)
                await store.admit(NewRun(run_id, "contract-elsewhere", None, None, now, None, first))
            good, bad, other = ids
            for index in (1, 2):  # no await in between: one group commit where a store batches
                store.append(good, (NewEvent(index, "fine", {"i": index}, now),))
                store.append(bad, (NewEvent(index, "bad", {"text": LONE_SURROGATE}, now),))
                store.append(other, (NewEvent(index, "fine", {"i": index}, now),))
            for run_id in ids:
                await store.finish(run_id, Outcome(RunStatus.COMPLETED, now, result=1))
            for run_id in (good, other):
                assert [e.type for e in await all_events(rt, run_id)] == ["run_queued", "fine", "fine", "run_end"]
            for run_id in ids:
                record = await runs.get(run_id, runtime=rt)
                assert record is not None and record.status == RunStatus.COMPLETED

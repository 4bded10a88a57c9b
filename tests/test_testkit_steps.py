"""Step doubles: a step's function replaced by name, for one test, and every step call on record."""

from __future__ import annotations

import pytest

from flue_core.errors import RunFailed
from flue_core.testkit import REAL, InvalidStepDouble, TestEnvironment, UnusedStepDouble
from testkit_app import ALL, album, approval, checkout

pytestmark = pytest.mark.anyio


@pytest.fixture
def flue_workflows():
    return ALL


async def test_a_double_returns_a_value_in_place_of_the_step(flue_env):
    flue_env.steps.double("charge", {"charged": 0, "fake": True})
    run = await flue_env.start(checkout, {"amount": 30})
    assert await flue_env.result(run) == {"receipt": {"charged": 0, "fake": True}, "attempt": 1}


async def test_a_double_function_gets_the_steps_arguments(flue_env):
    seen = []

    async def fake_charge(amount):
        seen.append(amount)
        return {"charged": amount * 2}

    flue_env.steps.double("charge", fake_charge)
    run = await flue_env.start(checkout, {"amount": 21})
    assert (await flue_env.result(run))["receipt"] == {"charged": 42}
    assert seen == [21]


async def test_exceptions_then_a_value_exercise_the_steps_retries(flue_env):
    flue_env.steps.double("charge", ConnectionError("down"), ConnectionError, {"charged": 30})
    run = await flue_env.start(checkout, {"amount": 30})
    assert await flue_env.result(run) == {"receipt": {"charged": 30}, "attempt": 1}
    calls = flue_env.steps.calls("charge")
    assert [type(call.error).__name__ if call.error else call.result for call in calls] == [
        "ConnectionError",
        "ConnectionError",
        {"charged": 30},
    ]
    retries = await flue_env.events(run, "step_retry")
    assert [event.data["delay"] for event in retries] == [10, 20]


async def test_real_lets_the_steps_own_function_answer(flue_env):
    flue_env.steps.double("charge", TimeoutError, REAL)
    run = await flue_env.start(checkout, {"amount": 7})
    assert (await flue_env.result(run))["receipt"] == {"charged": 7}
    assert [call.doubled for call in flue_env.steps.calls("charge")] == [True, False]


async def test_a_step_that_keeps_failing_fails_the_run_with_its_error(flue_env):
    flue_env.steps.double("charge", PermissionError("card declined"))
    run = await flue_env.start(checkout, {"amount": 7})
    with pytest.raises(RunFailed, match="card declined") as failure:
        await flue_env.result(run)
    assert any("PermissionError" in note for note in failure.value.__notes__)


async def test_calls_record_every_step_with_its_arguments_per_run(flue_env):
    first = await flue_env.start(album, {"images": ["a", "bb"]})
    await flue_env.start(album, {"images": ["ccc"]})
    await flue_env.advance(minutes=5)
    assert flue_env.steps.count("resize") == 3
    children = {child.run_id for child in await flue_env.children(first)}
    assert sorted(call.args for call in flue_env.steps.calls("resize") if call.run_id in children) == [("a",), ("bb",)]
    assert all(not call.doubled for call in flue_env.steps.calls())


async def test_a_double_of_one_occurrence_leaves_the_others_alone():
    from flue_core import RunContext, workflow

    async def fetch(page: int) -> int:
        return page

    @workflow(name="pages")
    async def pages(ctx: RunContext) -> list:
        return [await ctx.step("fetch", fetch, page) for page in range(3)]

    async with TestEnvironment([pages]) as env:
        env.steps.double("fetch#2", -1)
        run = await env.start(pages)
        assert await env.result(run) == [0, -1, 2]
        assert [call.key for call in env.steps.calls("fetch")] == ["fetch", "fetch#2", "fetch#3"]


async def test_a_double_no_step_used_fails_the_test_naming_the_steps_that_ran():
    with pytest.raises(UnusedStepDouble, match=r"'notfy' \(did you mean 'notify'\?\).*'notify'") as error:
        async with TestEnvironment(ALL) as env:
            env.steps.double("notfy", {"sent": True})
            env.steps.double("notify", {"sent": True})
            run = await env.start(approval, {"amount": 3})
            await env.waiting(run, signal="decision")
    assert error.value.details == {"unused": ["notfy"], "ran": ["notify"]}


@pytest.mark.parametrize("name", ["", "has#hash", "fetch#1", "x" * 201, 42])
async def test_a_double_must_name_a_possible_step(flue_env, name):
    with pytest.raises(InvalidStepDouble):
        flue_env.steps.double(name, 1)


async def test_a_double_needs_something_to_answer_with(flue_env):
    with pytest.raises(InvalidStepDouble, match="needs what the step answers"):
        flue_env.steps.double("charge")

"""Signals, child runs and events from the test environment, with clear failures when a run ends
otherwise than the test expects; ctx.now() and ctx.patched() as a test sees them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flue_core import RunContext, workflow
from flue_core.errors import InvalidSignal, RunCancelled
from flue_core.models import RunStatus
from flue_core.testkit import RunStuck, TestEnvironment, UnexpectedRunEnd
from testkit_app import ALL, album, approval, report

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def flue_workflows():
    return ALL


async def test_the_approve_path_pays_once_the_signal_arrives(flue_env):
    flue_env.steps.double("notify", {"sent": True})
    run = await flue_env.start(approval, {"amount": 120})
    waiting = await flue_env.waiting(run, signal="decision")
    assert waiting.waiting_for.kind == "signal"
    await flue_env.signal(run, "decision", {"approved": True, "by": "grace"})
    assert await flue_env.result(run) == {"status": "approved", "by": "grace"}
    assert flue_env.steps.calls("pay")[0].args == (120,)
    types = [event.type for event in await flue_env.events(run)]
    assert types[-5:] == ["signal_received", "run_resume", "signal_delivered", "step", "run_end"]


async def test_a_signal_the_workflow_refuses_is_an_invalid_signal(flue_env):
    flue_env.steps.double("notify", {"sent": True})
    run = await flue_env.start(approval, {"amount": 120})
    with pytest.raises(InvalidSignal):
        await flue_env.signal(run, "decision", {"approved": "maybe"})


async def test_waiting_for_a_run_that_ends_instead_fails_saying_how_it_ended(flue_env):
    run = await flue_env.start(report)
    with pytest.raises(UnexpectedRunEnd, match=r"completed with '2026-.*expected it to wait for signal 'decision'"):
        await flue_env.waiting(run, signal="decision")


async def test_a_fan_out_waits_for_its_children_and_sums_their_results(flue_env):
    run = await flue_env.start(album, {"images": ["a", "bb", "ccc"]})
    parent = await flue_env.waiting(run, kind="children")
    children = await flue_env.children(run)
    assert [child.input for child in children] == [{"image": "a"}, {"image": "bb"}, {"image": "ccc"}]
    assert set(parent.waiting_for.run_ids) == {child.run_id for child in children}
    assert await flue_env.result(run) == {"resized": 3, "bytes": 600}
    assert {(await flue_env.run(child)).status for child in children} == {RunStatus.COMPLETED}


async def test_cancelling_a_waiting_parent_cancels_its_children(flue_env):
    run = await flue_env.start(album, {"images": ["a"]})
    await flue_env.cancel(run)
    with pytest.raises(RunCancelled):
        await flue_env.result(run)
    assert [child.status for child in await flue_env.children(run)] == [RunStatus.CANCELLED]


async def test_ctx_now_is_the_virtual_time_and_the_same_on_every_replay():
    @workflow(name="stamped")
    async def stamped(ctx: RunContext) -> list:
        first = ctx.now()
        await ctx.sleep(3600)
        return [first.isoformat(), ctx.now().isoformat()]

    async with TestEnvironment([stamped], start=START) as env:
        run = await env.start(stamped)
        assert await env.result(run) == ["2026-03-02T09:00:00+00:00", "2026-03-02T10:00:00+00:00"]


def patched_flow(patched: bool):
    async def email(to: str) -> str:
        return f"email {to}"

    async def sms(to: str) -> str:
        return f"sms {to}"

    @workflow(name="notify-user")
    async def notify_user(ctx: RunContext, input: dict) -> list:
        sent = [await ctx.step("hello", email, input["to"])]
        await ctx.sleep(3600)
        if patched and ctx.patched("sms-reminder"):
            sent.append(await ctx.step("sms", sms, input["to"]))
        else:
            sent.append(await ctx.step("email", email, input["to"]))
        return sent

    return notify_user


async def test_a_patch_takes_the_new_path_in_fresh_runs_and_the_old_one_where_the_history_passed_it():
    store = "memory://patches"
    async with TestEnvironment([patched_flow(False)], store=store, start=START) as env:
        old_run = await env.start("notify-user", {"to": "ada"})
        await env.advance(hours=2)  # passed the point of the patch before it existed
        waiting_run = await env.start("notify-user", {"to": "bob"})  # still before it
    async with TestEnvironment([patched_flow(True)], store=store, start=env.now()) as env:
        new_run = await env.start("notify-user", {"to": "cy"})
        assert await env.result(waiting_run) == ["email bob", "sms bob"]
        assert await env.result(new_run) == ["email cy", "sms cy"]
        assert await env.result(old_run) == ["email ada", "email ada"]


async def test_a_stuck_parent_says_what_its_children_wait_for():
    @workflow(name="asks")
    async def asks(ctx: RunContext) -> str:
        return await ctx.wait_for_signal("answer")

    @workflow(name="delegates")
    async def delegates(ctx: RunContext) -> str:
        return await ctx.wait_for(await ctx.start_child(asks))

    async with TestEnvironment([asks, delegates]) as env:
        run = await env.start(delegates)
        with pytest.raises(RunStuck, match=r"waits for child run\(s\) .*\(asks\): it waits for signal 'answer' \(no timeout\)"):
            await env.result(run)

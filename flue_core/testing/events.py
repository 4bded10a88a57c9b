"""Contract: event streams (order, indexes equal to positions, offsets, following, closing)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from flue_core import InvalidOffset, RunContext, RunNotFound, runs, workflow, workflows
from flue_core.errors import InvalidEvent
from flue_core.offsets import format_offset
from flue_core.testing.base import GATES, ContractBase, all_events, gated, greet, wait_for_event


@workflow(name="contract-chatty")
async def chatty(ctx: RunContext, input: dict) -> int:
    count = input.get("count", 10)
    for i in range(count):
        ctx.emit("tick", {"i": i})
        if input.get("progress"):
            ctx.progress(i + 1, count, message=f"tick {i}")
    ctx.log.warning("careful", code=7)
    return count


@workflow(name="contract-emit-errors")
async def emit_errors(ctx: RunContext) -> list:
    problems = []
    for type_, data in [("run_end", {}), ("log", {}), ("progress", {}), ("9bad", {}), ("ok", {"b": b"x"}), ("ok", [1])]:
        try:
            ctx.emit(type_, data)
        except InvalidEvent:
            problems.append(type_)
    return problems


class EventsContract(ContractBase):
    async def test_a_runs_events_are_ordered_and_indexed_by_position(self, open_runtime):
        async with open_runtime(workflows=[chatty]) as rt:
            receipt = await workflows.start(chatty, input={"count": 5})
            await runs.wait(receipt.run_id, timeout=5)
            events = await all_events(rt, receipt.run_id)
            assert [e.type for e in events] == ["run_queued", "run_start"] + ["tick"] * 5 + ["log", "run_end"]
            assert [e.index for e in events] == list(range(len(events)))
            assert all(e.offset == format_offset(e.index) for e in events)
            assert all(e.run_id == receipt.run_id for e in events)
            assert [e.data["i"] for e in events if e.type == "tick"] == [0, 1, 2, 3, 4]
            stamps = [e.timestamp for e in events]
            assert stamps == sorted(stamps) and stamps[-1] - stamps[0] < timedelta(seconds=5)
            assert events[0].data == {"workflow": "contract-chatty", "input": {"count": 5}, "key": None}
            assert events[-1].data["status"] == "completed" and events[-1].data["result"] == 5
            assert events[-2].data == {"level": "warning", "message": "careful", "attributes": {"code": 7}}

    async def test_offsets_sort_like_positions(self, open_runtime):
        async with open_runtime(workflows=[chatty]) as rt:
            receipt = await workflows.start(chatty, input={"count": 12})
            await runs.wait(receipt.run_id, timeout=5)
            offsets = [e.offset for e in await all_events(rt, receipt.run_id)]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)

    async def test_reading_resumes_strictly_after_an_offset(self, open_runtime):
        async with open_runtime(workflows=[chatty]) as rt:
            receipt = await workflows.start(chatty, input={"count": 8})
            await runs.wait(receipt.run_id, timeout=5)
            events = await all_events(rt, receipt.run_id)
            middle = events[4]
            rest = [e async for e in runs.events(receipt.run_id, offset=middle.offset)]
            assert rest == events[5:]
            assert [e async for e in runs.events(receipt.run_id, offset=events[-1].offset)] == []

    async def test_progress_events_carry_current_total_and_message(self, open_runtime):
        async with open_runtime(workflows=[chatty]) as rt:
            receipt = await workflows.start(chatty, input={"count": 2, "progress": True})
            await runs.wait(receipt.run_id, timeout=5)
            progress = [e.data for e in await all_events(rt, receipt.run_id) if e.type == "progress"]
            assert progress == [
                {"current": 1, "total": 2, "message": "tick 0"},
                {"current": 2, "total": 2, "message": "tick 1"},
            ]

    async def test_a_follower_gets_events_as_they_happen_and_stops_at_run_end(self, open_runtime, gate):
        async with open_runtime() as rt:
            name = gate()
            receipt = await workflows.start(gated, input={"gate": name})
            seen: list[str] = []
            with anyio.fail_after(5):
                async for event in runs.events(receipt.run_id, follow=True):
                    seen.append(event.type)
                    if event.type == "waiting":
                        GATES[name].set()
            assert seen == ["run_queued", "run_start", "waiting", "released", "run_end"]
            assert rt.running

    async def test_following_an_ended_run_returns_its_history_and_stops(self, open_runtime):
        async with open_runtime() as rt:
            receipt = await workflows.start(greet, input={"name": "x"})
            await runs.wait(receipt.run_id, timeout=5)
            with anyio.fail_after(2):
                followed = [e async for e in runs.events(receipt.run_id, follow=True)]
            assert followed == await all_events(rt, receipt.run_id)

    async def test_offset_now_yields_only_new_events(self, open_runtime, gate):
        async with open_runtime() as rt:
            name = gate()
            receipt = await workflows.start(gated, input={"gate": name})
            await wait_for_event(rt, receipt.run_id, "waiting")
            fresh: list[str] = []

            async def follow() -> None:
                async for event in runs.events(receipt.run_id, offset="now", follow=True):
                    fresh.append(event.type)

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(follow)
                    await anyio.sleep(0.05)
                    GATES[name].set()
            assert fresh == ["released", "run_end"]

    @pytest.mark.parametrize("offset", ["", "abc", "1", "-2", "0_", "_1", "x_1"])
    async def test_a_malformed_offset_is_an_error(self, open_runtime, offset):
        async with open_runtime():
            receipt = await workflows.start(greet, input={"name": "x"})
            with pytest.raises(InvalidOffset):
                async for _ in runs.events(receipt.run_id, offset=offset):
                    pass

    async def test_events_of_an_unknown_run_raise_run_not_found(self, open_runtime):
        async with open_runtime():
            with pytest.raises(RunNotFound):
                async for _ in runs.events("run_00000000000000000000000000"):
                    pass

    async def test_reserved_or_malformed_custom_events_are_refused(self, open_runtime):
        async with open_runtime(workflows=[emit_errors]):
            receipt = await workflows.start(emit_errors)
            problems = await runs.result(receipt.run_id, timeout=5)
            assert problems == ["run_end", "log", "progress", "9bad", "ok", "ok"]

"""Contract: cron schedules — managed at run time, declared on workflows, each tick admitted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from flue_core import RunContext, runs, schedules, workflow
from flue_core.errors import InvalidInput, InvalidSchedule, ScheduleExists, ScheduleNotFound, WorkflowNotFound
from flue_core.models import Schedule, utc_now
from flue_core.scheduler import tick, tick_key
from flue_core.testing.base import ContractBase


@workflow(name="contract-ticked")
async def ticked(ctx: RunContext, input: dict) -> str:
    return f"{input.get('label')} {ctx.key}"


@workflow(name="contract-declared", schedule="*/5 * * * *", schedule_input={"label": "declared"})
async def declared(ctx: RunContext, input: dict) -> str:
    return input["label"]


SCHEDULE_WORKFLOWS = [ticked, declared]
#: Tests that hand ``tick`` a time of their own use schedules from the future, which the runtimes'
#: own ticking (on the real clock) finds nothing due in.
FUTURE = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)


def _stored(name: str, cron: str, last_tick: datetime, *, catchup: int = 1) -> Schedule:
    return Schedule(
        name=name,
        workflow="contract-ticked",
        cron=cron,
        input={"label": name},
        catchup=catchup,
        created_at=last_tick,
        updated_at=last_tick,
        last_tick=last_tick,
    )


async def _keys(workflow_name: str) -> list[str]:
    page = await runs.list(workflow=workflow_name, limit=1000)
    return sorted(record.key or "" for record in page.runs)


class SchedulesContract(ContractBase):
    async def test_a_schedule_is_created_listed_paused_resumed_and_deleted(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS):
            made = await schedules.create("nightly", ticked, "0 3 * * *", input={"label": "n"}, timezone="Europe/Berlin")
            assert made.workflow == "contract-ticked" and made.timezone == "Europe/Berlin" and not made.paused
            assert await schedules.create("nightly", ticked, "0 3 * * *", input={"label": "n"}, timezone="Europe/Berlin") == made
            assert "nightly" in [s.name for s in await schedules.list()]
            assert (await schedules.pause("nightly")).paused
            assert not (await schedules.resume("nightly")).paused
            await schedules.delete("nightly")
            with pytest.raises(ScheduleNotFound):
                await schedules.get("nightly")
            with pytest.raises(ScheduleNotFound):
                await schedules.delete("nightly")

    async def test_a_taken_name_with_another_definition_is_a_conflict(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS):
            await schedules.create("taken", ticked, "0 3 * * *", input={})
            with pytest.raises(ScheduleExists):
                await schedules.create("taken", ticked, "0 4 * * *", input={})

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            (("bad cron", "contract-ticked", "61 * * * *"), InvalidSchedule),
            (("bad-fields", "contract-ticked", "* * *"), InvalidSchedule),
            (("seconds", "contract-ticked", "* * * * * *"), InvalidSchedule),  # not a run every second
            (("bad-zone", "contract-ticked", "* * * * *", {"timezone": "Mars/Olympus"}), InvalidSchedule),
            (("bad name!", "contract-ticked", "* * * * *"), InvalidSchedule),
            (("name\n", "contract-ticked", "* * * * *"), InvalidSchedule),
            (("machine-zone", "contract-ticked", "* * * * *", {"timezone": "localtime"}), InvalidSchedule),
            (("no-workflow", "contract-nothing", "* * * * *"), WorkflowNotFound),
            (("bad-input", "contract-ticked", "* * * * *", {"input": [1, 2]}), InvalidInput),
            (("bad-catchup", "contract-ticked", "* * * * *", {"catchup": -1}), InvalidSchedule),
        ],
    )
    async def test_a_bad_schedule_is_refused_and_stores_nothing(self, open_runtime, args, error):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS):
            options = args[3] if len(args) > 3 else {}
            options.setdefault("input", {})
            with pytest.raises(error):
                await schedules.create(args[0], args[1], args[2], **options)
            assert args[0] not in [s.name for s in await schedules.list()]

    async def test_a_declared_schedule_exists_once_the_runtime_is_open(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS):
            found = await schedules.get("contract-declared")
            assert found.declared and found.cron == "*/5 * * * *" and found.input == {"label": "declared"}

    async def test_due_ticks_are_admitted_with_their_time_in_the_key(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS) as rt:
            start = FUTURE
            await rt.target.store.put_schedule(_stored("every-minute", "* * * * *", start, catchup=0), replace=False)
            schedule = await schedules.get("every-minute")
            upcoming = await tick(rt, schedule, start + timedelta(minutes=3, seconds=10))
            assert upcoming == start + timedelta(minutes=4)
            assert await _keys("contract-ticked") == [tick_key("every-minute", start + timedelta(minutes=3))]
            assert (await schedules.get("every-minute")).last_tick == start + timedelta(minutes=3)

    async def test_missed_ticks_follow_the_catchup_bound(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS) as rt:
            start = FUTURE
            await rt.target.store.put_schedule(_stored("catching-up", "* * * * *", start, catchup=2), replace=False)
            await tick(rt, await schedules.get("catching-up"), start + timedelta(minutes=10, seconds=30))
            minutes = [8, 9, 10]  # 10 is on time; 8 and 9 are the two most recent missed ticks
            assert await _keys("contract-ticked") == [tick_key("catching-up", start + timedelta(minutes=m)) for m in minutes]

    async def test_each_tick_runs_once_when_two_runtimes_handle_it(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS) as first, open_runtime(workflows=SCHEDULE_WORKFLOWS) as second:
            start = FUTURE
            await first.target.store.put_schedule(_stored("contended", "* * * * *", start, catchup=3), replace=False)
            schedule = await schedules.get("contended", runtime=first)
            now = start + timedelta(minutes=6, seconds=5)
            async with anyio.create_task_group() as group:
                for rt in (first, second, first, second):
                    group.start_soon(tick, rt, schedule, now)
            keys = await _keys("contract-ticked")
            assert keys == [tick_key("contended", start + timedelta(minutes=m)) for m in (3, 4, 5, 6)]

    async def test_running_runtimes_admit_a_due_tick_exactly_once(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS) as first, open_runtime(workflows=SCHEDULE_WORKFLOWS):
            now = utc_now()
            minute = now.replace(second=0, microsecond=0)
            await first.target.store.put_schedule(
                _stored("live", "* * * * *", minute - timedelta(seconds=1), catchup=0), replace=False
            )
            with anyio.fail_after(10):
                while tick_key("live", minute) not in await _keys("contract-ticked"):
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)  # time for a second admission, if either runtime were to make one
            keys = await _keys("contract-ticked")
            assert len(keys) == len(set(keys)) and tick_key("live", minute) in keys

    async def test_a_paused_schedule_admits_nothing(self, open_runtime):
        async with open_runtime(workflows=SCHEDULE_WORKFLOWS) as rt:
            start = FUTURE
            paused = _stored("paused", "* * * * *", start).model_copy(update={"paused": True})
            await rt.target.store.put_schedule(paused, replace=False)
            assert await tick(rt, paused, start + timedelta(minutes=5)) is None
            assert await _keys("contract-ticked") == []

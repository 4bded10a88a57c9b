"""Contract: the store's own rules for waiting, exercised directly (pool, wake-ups, mailbox, prune)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flue_core.flow.limits import Limits
from flue_core.models import RunStatus, Schedule, WaitingFor, utc_now
from flue_core.store import NewEvent, NewRun, NewSignal, Outcome, Suspension
from flue_core.testing.base import ContractBase
from flue_core.testing.store import opened, running_run, stored_types


async def pooled_run(store, run_id: str, workflow: str = "w", *, at: datetime | None = None) -> None:  # type: ignore[no-untyped-def]
    now = at or utc_now()
    first = NewEvent(0, "run_queued", {"workflow": workflow, "input": None, "key": None}, now)
    await store.admit(NewRun(run_id, workflow, None, None, now, None, first))


def signal(signal_id: str, name: str = "go", data: object = None, key: str | None = None) -> NewSignal:
    return NewSignal(signal_id, name, data, key, utc_now())


class StoreWaitsContract(ContractBase):
    async def test_the_ready_pool_gives_each_run_once_oldest_first(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            for n in (3, 1, 2):
                await pooled_run(store, f"run_p{n}", at=base + timedelta(seconds=n))
            first = (await store.take_ready("wkr_a", {"w": Limits()}, 2)).records
            second = (await store.take_ready("wkr_b", {"w": Limits()}, 5)).records
            assert [r.run_id for r in first] == ["run_p1", "run_p2"]
            assert [r.run_id for r in second] == ["run_p3"]
            assert (await store.take_ready("wkr_c", {"w": Limits()}, 5)).records == []
            assert (await store.claim("run_p1", "wkr_a")) is not None
            assert (await store.claim("run_p3", "wkr_a")) is None  # taken by wkr_b

    async def test_the_ready_pool_honours_workflow_limits_and_names(self, make_target):
        async with opened(make_target) as store:
            for n in range(3):
                await pooled_run(store, f"run_l{n}", "limited")
            await pooled_run(store, "run_other", "elsewhere")
            taken = (await store.take_ready("wkr_a", {"limited": Limits(2)}, 10)).records
            assert [r.run_id for r in taken] == ["run_l0", "run_l1"]
            assert (await store.take_ready("wkr_b", {"limited": Limits(2)}, 10)).records == []
            await store.claim("run_l0", "wkr_a")
            await store.finish("run_l0", Outcome(RunStatus.COMPLETED, utc_now()))
            assert [r.run_id for r in (await store.take_ready("wkr_b", {"limited": Limits(2)}, 10)).records] == ["run_l2"]
            assert [r.run_id for r in (await store.take_ready("wkr_b", {"elsewhere": Limits()}, 10, only=["run_other"])).records] == ["run_other"]

    async def test_a_claim_over_the_limit_puts_the_run_back_in_the_pool(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_busy", "wkr_a")  # workflow "w", running
            await pooled_run(store, "run_next")
            (taken,) = (await store.take_ready("wkr_a", {"w": Limits()}, 1)).records
            assert await store.claim(taken.run_id, "wkr_a", limit=1) is None
            assert [r.run_id for r in (await store.take_ready("wkr_b", {"w": Limits()}, 1)).records] == ["run_next"]

    async def test_a_suspended_run_wakes_once_when_due(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w1", "wkr_a")
            due = utc_now() - timedelta(milliseconds=1)
            parked = await store.suspend("run_w1", "wkr_a", Suspension(WaitingFor(kind="sleep"), due))
            assert parked is not None and parked.suspended and parked.record.status == RunStatus.WAITING
            assert await store.next_wake() == due
            assert await store.wake_due(utc_now()) == 1
            assert await store.wake_due(utc_now()) == 0
            assert await store.next_wake() is None
            (taken,) = (await store.take_ready("wkr_b", {"w": Limits()}, 5)).records
            attempt = await store.claim(taken.run_id, "wkr_b")
            assert attempt is not None and attempt.resumed and attempt.record.attempt == 1
            assert [t for _, t in await stored_types(store, "run_w1")][-1] == "run_waiting"

    async def test_only_the_owner_of_a_running_run_can_suspend_it(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w2", "wkr_a")
            assert await store.suspend("run_w2", "wkr_b", Suspension(WaitingFor(kind="sleep"), None)) is None

    async def test_a_run_waiting_for_a_signal_already_received_is_not_parked(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w3", "wkr_a")
            await store.send_signal("run_w3", signal("sig_1"))
            assert [t for _, t in await stored_types(store, "run_w3")][-1] != "signal_received"  # running: not yet
            kept = await store.suspend("run_w3", "wkr_a", Suspension(WaitingFor(kind="signal", name="go"), None))
            assert kept is not None and not kept.suspended and kept.record.status == RunStatus.RUNNING
            types = [t for _, t in await stored_types(store, "run_w3")]
            assert types[-1] == "signal_received" and kept.next_index == len(types)
            delivery = await store.take_signal("run_w3", "wkr_a", "go", "#signal:go")
            assert delivery is not None and delivery.signal is not None and delivery.signal.signal_id == "sig_1"
            again = await store.take_signal("run_w3", "wkr_a", "go", "#signal:go#2")
            assert again is not None and again.signal is None
            assert "#signal:go" in await store.load_steps("run_w3")

    async def test_a_signal_sent_after_a_waits_deadline_is_left_for_the_next_wait(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w6", "wkr_a")
            deadline = utc_now()
            await store.send_signal("run_w6", NewSignal("sig_late", "go", None, None, deadline + timedelta(seconds=1)))
            missed = await store.take_signal("run_w6", "wkr_a", "go", "#signal:go", sent_by=deadline)
            assert missed is not None and missed.signal is None
            taken = await store.take_signal("run_w6", "wkr_a", "go", "#signal:go#2")
            assert taken is not None and taken.signal is not None and taken.signal.signal_id == "sig_late"

    async def test_a_signal_wakes_a_run_waiting_for_its_name_only(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w4", "wkr_a")
            await store.suspend("run_w4", "wkr_a", Suspension(WaitingFor(kind="signal", name="go"), None))
            await store.send_signal("run_w4", signal("sig_a", name="other"))
            assert (await store.get("run_w4")).status == RunStatus.WAITING
            await store.send_signal("run_w4", signal("sig_b", name="go"))
            record = await store.get("run_w4")
            assert record.status == RunStatus.QUEUED and record.waiting_for is None
            assert [t for _, t in await stored_types(store, "run_w4")][-2:] == ["signal_received", "signal_received"]

    async def test_a_signal_key_stores_one_signal(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_w5", "wkr_a")
            first = await store.send_signal("run_w5", signal("sig_1", key="k", data=1))
            second = await store.send_signal("run_w5", signal("sig_2", key="k", data=2))
            assert first.created and not second.created and second.signal_id == "sig_1" and second.data == 1

    async def test_the_end_of_the_last_awaited_child_wakes_its_parent(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_parent", "wkr_a")
            now = utc_now()
            for child in ("run_c1", "run_c2"):
                first = NewEvent(0, "run_queued", {}, now)
                await store.admit(NewRun(child, "w", None, None, now, None, first, parent_run_id="run_parent"))
            waiting = WaitingFor(kind="children", run_ids=["run_c1", "run_c2"])
            assert (await store.suspend("run_parent", "wkr_a", Suspension(waiting, None))).suspended
            await store.finish("run_c1", Outcome(RunStatus.COMPLETED, utc_now()))
            assert (await store.get("run_parent")).status == RunStatus.WAITING
            await store.finish("run_c2", Outcome(RunStatus.FAILED, utc_now()))
            assert (await store.get("run_parent")).status == RunStatus.QUEUED

    async def test_prune_deletes_only_runs_ended_before_the_cutoff(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_old", "wkr_a")
            await store.finish("run_old", Outcome(RunStatus.COMPLETED, utc_now() - timedelta(days=2)))
            await running_run(store, "run_new", "wkr_a")
            await store.finish("run_new", Outcome(RunStatus.COMPLETED, utc_now()))
            await running_run(store, "run_open", "wkr_a")
            assert await store.prune(utc_now() - timedelta(days=1)) == 1
            assert await store.get("run_old") is None and await store.read("run_old", -1, 10) is None
            assert await store.get("run_new") is not None and await store.get("run_open") is not None

    async def test_prune_keeps_the_ended_child_of_an_unfinished_parent_outside_its_limit(self, make_target):
        async with opened(make_target) as store:
            long_ago = utc_now() - timedelta(days=3)
            await running_run(store, "run_parent", "wkr_a")
            first = NewEvent(0, "run_queued", {}, long_ago)
            await store.admit(NewRun("run_child", "w", None, None, long_ago, None, first, parent_run_id="run_parent"))
            await store.finish("run_child", Outcome(RunStatus.COMPLETED, long_ago))
            await running_run(store, "run_other", "wkr_a")
            await store.finish("run_other", Outcome(RunStatus.COMPLETED, long_ago + timedelta(seconds=1)))
            cutoff = utc_now() - timedelta(days=1)
            assert await store.prune(cutoff, limit=1) == 1  # run_other: the kept child takes no place
            assert await store.prune(cutoff) == 0
            assert (await store.get("run_child")).status == RunStatus.COMPLETED
            await store.finish("run_parent", Outcome(RunStatus.COMPLETED, long_ago + timedelta(seconds=2)))
            assert await store.prune(cutoff) == 2
            assert await store.get("run_child") is None and await store.get("run_parent") is None

    async def test_schedules_keep_their_last_tick_and_advance_by_compare_and_set(self, make_target):
        async with opened(make_target) as store:
            start = datetime(2026, 1, 1, tzinfo=UTC)
            schedule = Schedule(name="s", workflow="w", cron="* * * * *", created_at=start, updated_at=start, last_tick=start)
            stored, created = await store.put_schedule(schedule, replace=False)
            assert created and stored.last_tick == start
            later = start + timedelta(minutes=1)
            assert await store.advance_schedule("s", start, later)
            assert not await store.advance_schedule("s", start, later + timedelta(minutes=1))
            replaced, created = await store.put_schedule(schedule.model_copy(update={"cron": "0 * * * *", "last_tick": None}), replace=True)
            assert not created and replaced.cron == "0 * * * *" and replaced.last_tick == later
            assert (await store.get_schedule("s")) == replaced
            assert await store.delete_schedule("s") and not await store.delete_schedule("s")
            assert await store.list_schedules() == []

    async def test_a_scheduled_run_waits_for_its_start(self, make_target):
        async with opened(make_target) as store:
            now = utc_now()
            start = now + timedelta(hours=1)
            first = NewEvent(0, "run_queued", {}, now)
            admitted = await store.admit(NewRun("run_later", "w", None, None, now, "wkr_a", first, start_at=start))
            assert admitted.record.status == RunStatus.SCHEDULED and admitted.record.wake_at == start
            assert (await store.take_ready("wkr_a", {"w": Limits()}, 5)).records == []
            assert await store.wake_due(now) == 0
            assert await store.wake_due(start) == 1
            assert [r.run_id for r in (await store.take_ready("wkr_a", {"w": Limits()}, 5)).records] == ["run_later"]
            attempt = await store.claim("run_later", "wkr_a")
            assert attempt is not None and not attempt.resumed and attempt.record.attempt == 1


"""Contract: the store's flow-control rules, exercised directly (priority order, per-key concurrency,
rate limits, debounce folding, the new filters)."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio

from flue_core.flow.limits import Limits
from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent, NewRun, Outcome, RunQuery, RunStore, Suspension
from flue_core.models import WaitingFor
from flue_core.testing.base import ContractBase
from flue_core.testing.store import opened, stored_types


async def pooled(
    store: RunStore,
    run_id: str,
    workflow: str = "w",
    *,
    at: datetime | None = None,
    priority: int = 0,
    concurrency_key: str | None = None,
    rate_key: str | None = None,
) -> None:
    now = at or utc_now()
    first = NewEvent(0, "run_queued", {"workflow": workflow, "input": None, "key": None}, now)
    run = NewRun(
        run_id, workflow, None, None, now, None, first,
        priority=priority, concurrency_key=concurrency_key, rate_key=rate_key,
    )  # fmt: skip
    await store.admit(run)


async def debounced(  # type: ignore[no-untyped-def]
    store: RunStore,
    run_id: str,
    input: object,
    window: float,
    key: str | None = None,
    debounce_key: str = "k",
    **flow: object,
):
    now = utc_now()
    first = NewEvent(0, "run_queued", {"workflow": "d", "input": input, "key": key}, now)
    start_at = now + timedelta(seconds=window)
    run = NewRun(run_id, "d", input, key, now, None, first, start_at=start_at, debounce_key=debounce_key, **flow)  # type: ignore[arg-type]
    return await store.admit(run)


def ids(taken) -> list[str]:  # type: ignore[no-untyped-def]
    return [record.run_id for record in taken.records]


class FlowStoreContract(ContractBase):
    async def test_records_keep_priority_and_flow_keys_and_list_filters_by_them(self, make_target):
        async with opened(make_target) as store:
            await pooled(store, "run_fa", priority=7, concurrency_key="acme", rate_key="eu")
            await pooled(store, "run_fb", priority=-3, concurrency_key="other", rate_key="eu")
            record = await store.get("run_fa")
            assert record is not None
            assert (record.priority, record.concurrency_key, record.rate_key, record.debounce_key) == (7, "acme", "eu", None)
            assert [r.run_id for r in await store.list(RunQuery(concurrency_key="acme"))] == ["run_fa"]
            assert {r.run_id for r in await store.list(RunQuery(rate_key="eu"))} == {"run_fa", "run_fb"}
            (taken,) = (await store.take_ready("wkr_a", {"w": Limits()}, 1, only=["run_fb"])).records
            await store.claim(taken.run_id, "wkr_a")
            since = utc_now() - timedelta(seconds=60)
            assert [r.run_id for r in await store.list(RunQuery(started_after=since))] == ["run_fb"]
            assert await store.list(RunQuery(started_after=utc_now() + timedelta(seconds=60))) == []

    async def test_the_pool_gives_higher_priority_first_and_first_come_first_within_one(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            await pooled(store, "run_p1", at=base + timedelta(seconds=1))
            await pooled(store, "run_p2", at=base + timedelta(seconds=2), priority=5)
            await pooled(store, "run_p3", at=base + timedelta(seconds=3), priority=-5)
            await pooled(store, "run_p4", at=base + timedelta(seconds=4), priority=5)
            await pooled(store, "run_p5", at=base + timedelta(seconds=5), priority=100)
            assert ids(await store.take_ready("wkr_a", {"w": Limits()}, 3)) == ["run_p5", "run_p2", "run_p4"]
            assert ids(await store.take_ready("wkr_a", {"w": Limits()}, 3)) == ["run_p1", "run_p3"]

    async def test_priority_orders_runs_of_a_limited_workflow_as_slots_free(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            await pooled(store, "run_q1", at=base)
            await pooled(store, "run_q2", at=base + timedelta(seconds=1))
            await pooled(store, "run_q3", at=base + timedelta(seconds=2), priority=1)
            assert ids(await store.take_ready("wkr_a", {"w": Limits(1)}, 5)) == ["run_q3"]
            assert ids(await store.take_ready("wkr_a", {"w": Limits(1)}, 5)) == []

    async def test_a_busy_key_holds_back_its_own_runs_only(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            for n in range(3):
                await pooled(store, f"run_a{n}", at=base + timedelta(seconds=n), concurrency_key="a")
            await pooled(store, "run_b0", at=base + timedelta(seconds=5), concurrency_key="b")
            await pooled(store, "run_n0", at=base + timedelta(seconds=6))
            limits = {"w": Limits(1)}
            assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_a0", "run_b0", "run_n0"]
            assert ids(await store.take_ready("wkr_b", limits, 10)) == []
            assert await store.claim("run_a0", "wkr_a", limit=1) is not None
            assert await store.claim("run_b0", "wkr_a", limit=1) is not None  # key a's run does not count
            await store.finish("run_a0", Outcome(RunStatus.COMPLETED, utc_now()))
            assert ids(await store.take_ready("wkr_b", limits, 10)) == ["run_a1"]

    async def test_a_claim_over_the_limit_of_its_key_goes_back_to_the_pool(self, make_target):
        async with opened(make_target) as store:
            await pooled(store, "run_c1", concurrency_key="a")
            await pooled(store, "run_c2", concurrency_key="a")
            await pooled(store, "run_c3", concurrency_key="b")
            taken = ids(await store.take_ready("wkr_a", {"w": Limits()}, 3))  # no limit given: all taken
            assert sorted(taken) == ["run_c1", "run_c2", "run_c3"]
            assert await store.claim("run_c1", "wkr_a", limit=1) is not None
            assert await store.claim("run_c2", "wkr_a", limit=1) is None
            assert await store.claim("run_c3", "wkr_a", limit=1) is not None
            assert ids(await store.take_ready("wkr_b", {"w": Limits()}, 3)) == ["run_c2"]

    async def test_per_key_limits_hold_across_two_store_connections(self, make_target):
        async with opened(make_target) as one, opened(make_target) as two:
            for n in range(6):
                await pooled(one, f"run_x{n}", concurrency_key=f"k{n % 2}")
            limits = {"w": Limits(2)}
            got_one, got_two = [], []
            async with anyio.create_task_group() as tg:

                async def take(store: RunStore, into: list[str], owner: str) -> None:
                    into.extend(ids(await store.take_ready(owner, limits, 10)))

                tg.start_soon(take, one, got_one, "wkr_1")
                tg.start_soon(take, two, got_two, "wkr_2")
            taken = got_one + got_two
            assert len(taken) == len(set(taken)) == 4
            assert sorted(int(run_id[-1]) % 2 for run_id in taken) == [0, 0, 1, 1]

    async def test_a_rate_limit_counts_first_starts_in_its_window_and_says_when_to_look_again(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            for n in range(5):
                await pooled(store, f"run_r{n}", at=base + timedelta(seconds=n), rate_key="eu")
            await pooled(store, "run_us", at=base + timedelta(seconds=6), rate_key="us")
            limits = {"w": Limits(rate=2, per=1.0)}
            before = utc_now()
            taken = await store.take_ready("wkr_a", limits, 10)
            assert ids(taken) == ["run_r0", "run_r1", "run_us"]
            assert taken.retry_at is not None and before < taken.retry_at <= utc_now() + timedelta(seconds=1.05)
            for run_id in ids(taken):
                assert await store.claim(run_id, "wkr_a") is not None
            held = await store.take_ready("wkr_a", limits, 10)
            assert held.records == [] and held.retry_at is not None
            await anyio.sleep(max((held.retry_at - utc_now()).total_seconds(), 0) + 0.05)
            assert ids(await store.take_ready("wkr_a", limits, 10)) == ["run_r2", "run_r3"]
            assert ids(await store.take_ready("wkr_a", {"w": Limits()}, 10)) == ["run_r4"]  # no limit, no hold

    async def test_a_resumed_run_is_not_held_by_the_rate_limit(self, make_target):
        async with opened(make_target) as store:
            await pooled(store, "run_s1")
            await pooled(store, "run_s2")
            limits = {"w": Limits(rate=1, per=60.0)}
            assert ids(await store.take_ready("wkr_a", limits, 5)) == ["run_s1"]
            attempt = await store.claim("run_s1", "wkr_a")
            assert attempt is not None
            past = utc_now() - timedelta(seconds=1)
            parked = await store.suspend("run_s1", "wkr_a", Suspension(WaitingFor(kind="sleep"), past))
            assert parked is not None and parked.suspended
            assert await store.wake_due(utc_now()) == 1
            taken = await store.take_ready("wkr_a", limits, 5)
            assert ids(taken) == ["run_s1"] and taken.retry_at is not None  # run_s2 still held

    async def test_debounced_starts_fold_into_the_pending_run_with_the_last_input(self, make_target):
        async with opened(make_target) as store:
            first = await debounced(store, "run_d1", {"n": 1}, 30)
            assert first.created and first.record.status == RunStatus.SCHEDULED
            assert first.record.waiting_for is not None and first.record.waiting_for.kind == "debounce"
            folded = await debounced(store, "run_d2", {"n": 2}, 60)
            assert not folded.created and folded.record.run_id == "run_d1"
            assert folded.record.input == {"n": 2}
            assert folded.record.wake_at is not None and folded.record.wake_at > first.record.wake_at  # type: ignore[operator]
            assert await store.get("run_d2") is None
            record = await store.get("run_d1")
            assert record is not None and record.input == {"n": 2} and record.wake_at == folded.record.wake_at
            assert [type for _, type in await stored_types(store, "run_d1")] == ["run_queued", "run_debounced"]
            other = await debounced(store, "run_d3", {"n": 3}, 30, debounce_key="other")
            assert other.created
            assert await store.wake_due(utc_now() + timedelta(seconds=45)) == 1  # run_d3 only: run_d1 moved on
            assert await store.wake_due(utc_now() + timedelta(seconds=90)) == 1
            after = await debounced(store, "run_d4", {"n": 4}, 30)
            assert after.created  # the pending run is in the pool: a new window begins

    async def test_a_fold_moves_the_runs_priority_and_flow_keys_with_its_input(self, make_target):
        async with opened(make_target) as store:
            await debounced(store, "run_m1", {"customer": "a"}, 30, concurrency_key="a", rate_key="x")
            folded = await debounced(store, "run_m2", {"customer": "b"}, 30, priority=9, concurrency_key="b", rate_key="y")
            assert not folded.created
            record = await store.get("run_m1")
            assert record is not None and record.input == {"customer": "b"}
            assert (record.priority, record.concurrency_key, record.rate_key) == (9, "b", "y")
            assert [r.run_id for r in await store.list(RunQuery(concurrency_key="b"))] == ["run_m1"]
            assert [r.run_id for r in await store.list(RunQuery(rate_key="y"))] == ["run_m1"]
            assert await store.list(RunQuery(concurrency_key="a")) == []
            assert await store.list(RunQuery(rate_key="x")) == []
            assert await store.wake_due(utc_now() + timedelta(seconds=60)) == 1
            taken = await store.take_ready("wkr_a", {"d": Limits(1)}, 5)
            assert ids(taken) == ["run_m1"] and taken.records[0].concurrency_key == "b"

    async def test_a_pending_run_asked_to_cancel_takes_no_more_starts(self, make_target):
        async with opened(make_target) as store:
            await debounced(store, "run_c1", {"n": 1}, 30)
            assert await store.request_cancel("run_c1") is not None
            fresh = await debounced(store, "run_c2", {"n": 2}, 30)
            assert fresh.created and fresh.record.run_id == "run_c2"
            cancelled = await store.get("run_c1")
            assert cancelled is not None and cancelled.input == {"n": 1}
            again = await debounced(store, "run_c3", {"n": 3}, 30)
            assert not again.created and again.record.run_id == "run_c2"

    async def test_racing_debounced_starts_fold_into_one_run(self, make_target):
        async with opened(make_target) as one, opened(make_target) as two:
            results = []

            async def start(store: RunStore, n: int) -> None:
                results.append(await debounced(store, f"run_race{n}", {"n": n}, 30))

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(start, one if n % 2 else two, n)
            assert sum(result.created for result in results) == 1
            assert len({result.record.run_id for result in results}) == 1

    async def test_an_idempotency_key_is_looked_up_before_debouncing(self, make_target):
        async with opened(make_target) as store:
            first = await debounced(store, "run_i1", {"n": 1}, 30, key="order-1")
            again = await debounced(store, "run_i2", {"n": 1}, 30, key="order-1")
            assert not again.created and again.record.run_id == "run_i1" and again.record.input == {"n": 1}
            folded = await debounced(store, "run_i3", {"n": 3}, 30, key="order-3")
            assert not folded.created and folded.record.run_id == "run_i1" and folded.record.key == "order-1"
            assert first.created

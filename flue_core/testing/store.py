"""Contract: the store's own rules, exercised directly (appends, fencing, heartbeats)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent, NewRun, Outcome, RunStore, WorkerInfo
from flue_core.target import Target
from flue_core.testing.base import ContractBase


@asynccontextmanager
async def opened(make_target: Callable[[], Target]) -> AsyncIterator[RunStore]:
    store = make_target().store
    await store.open(lambda run_ids: None)
    try:
        yield store
    finally:
        await store.close()


def worker(worker_id: str) -> WorkerInfo:
    return WorkerInfo(worker_id, "contract-host", 4242, None, heartbeat_at=utc_now().timestamp())


async def running_run(store: RunStore, run_id: str, owner: str) -> int:
    """A run claimed by ``owner``; returns the index its next event takes."""
    await store.heartbeat(worker(owner))
    now = utc_now()
    first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": None}, now)
    await store.admit(NewRun(run_id, "w", None, None, now, owner, first))
    attempt = await store.claim(run_id, owner)
    assert attempt is not None
    return attempt.next_index


async def stored_types(store: RunStore, run_id: str) -> list[tuple[int, str]]:
    await store.flush()
    page = await store.read(run_id, -1, 100)
    assert page is not None
    return [(event.index, event.parse().type) for event in page.events]


def event(index: int, type: str = "tick") -> NewEvent:
    return NewEvent(index, type, {}, utc_now())


class StoreContract(ContractBase):
    async def test_events_land_only_at_the_next_free_position(self, make_target):
        async with opened(make_target) as store:
            next_index = await running_run(store, "run_s1", "wkr_a")
            store.append("run_s1", [event(next_index), event(next_index)])  # the second one's index is taken
            store.append("run_s1", [event(next_index + 5)])  # past a gap
            store.append("run_s1", [event(next_index + 1, "after")])
            assert await stored_types(store, "run_s1") == [(0, "run_queued"), (1, "tick"), (2, "after")]

    async def test_appends_to_an_ended_run_are_dropped(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_s2", "wkr_a")
            await store.finish("run_s2", Outcome(RunStatus.COMPLETED, utc_now()))
            store.append("run_s2", [event(2, "late")])
            assert await stored_types(store, "run_s2") == [(0, "run_queued"), (1, "run_end")]

    async def test_a_worker_that_lost_a_run_can_neither_end_nor_requeue_it(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_s3", "wkr_a")
            await store.heartbeat(worker("wkr_b"))
            adopted = await store.adopt(["wkr_a"], "wkr_b", ["w"])
            assert [r.run_id for r in adopted] == ["run_s3"]
            assert (await store.requeue("run_s3", None, held_by="wkr_a")) is None
            record = await store.finish("run_s3", Outcome(RunStatus.COMPLETED, utc_now()), held_by="wkr_a")
            assert record is not None and record.status == RunStatus.RUNNING
            record = await store.finish("run_s3", Outcome(RunStatus.FAILED, utc_now()), held_by="wkr_b")
            assert record is not None and record.status == RunStatus.FAILED

    async def test_heartbeats_tell_a_worker_which_runs_to_stop(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_s4", "wkr_a")
            await running_run(store, "run_s5", "wkr_a")
            await running_run(store, "run_s6", "wkr_a")
            assert await store.heartbeat(worker("wkr_a"), ["run_s4", "run_s5", "run_s6"]) == []
            await store.request_cancel("run_s4")
            await store.heartbeat(worker("wkr_b"))
            await store.adopt(["wkr_a"], "wkr_b", ["w"])  # takes all three
            stop = await store.heartbeat(worker("wkr_a"), ["run_s4", "run_s5"])
            assert sorted(stop) == ["run_s4", "run_s5"]
            assert await store.heartbeat(worker("wkr_b"), ["run_s4", "run_s5", "run_s6"]) == ["run_s4"]

    async def test_first_terminal_write_wins_in_the_store(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_s7", "wkr_a")
            first = await store.finish("run_s7", Outcome(RunStatus.COMPLETED, utc_now(), result={"n": 1}))
            second = await store.finish("run_s7", Outcome(RunStatus.FAILED, utc_now()))
            assert first == second and second.result == {"n": 1}
            assert [t for _, t in await stored_types(store, "run_s7")].count("run_end") == 1

    async def test_a_run_admitted_claimed_is_running_for_its_owner(self, make_target):
        async with opened(make_target) as store:
            await store.heartbeat(worker("wkr_a"))
            now = utc_now()
            first = NewEvent(0, "run_queued", {"workflow": "w", "input": {"n": 1}, "key": None}, now)
            admission, attempt = await store.admit_claimed(NewRun("run_s8", "w", {"n": 1}, None, now, "wkr_a", first))
            assert admission.created and admission.record.status == RunStatus.QUEUED
            assert attempt is not None and attempt.next_index == 1 and not attempt.resumed
            assert attempt.record.status == RunStatus.RUNNING and attempt.record.attempt == 1
            stored = await store.get("run_s8")
            assert stored is not None and stored.status == RunStatus.RUNNING and stored.attempt == 1
            assert stored.started_at == attempt.record.started_at and stored.input == {"n": 1}
            assert await store.heartbeat(worker("wkr_a"), ["run_s8"]) == []  # owned by wkr_a
            assert await store.claim("run_s8", "wkr_a") is None  # claimed once
            store.append("run_s8", [event(1, "run_start")])
            await store.finish("run_s8", Outcome(RunStatus.COMPLETED, utc_now()), held_by="wkr_a")
            assert await stored_types(store, "run_s8") == [(0, "run_queued"), (1, "run_start"), (2, "run_end")]

    async def test_admitting_claimed_with_a_bound_key_claims_nothing(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_s9", "wkr_a")  # no key: admit a keyed one next
            now = utc_now()
            first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": "k"}, now)
            await store.admit(NewRun("run_s10", "w", None, "k", now, "wkr_a", first))
            again = NewRun("run_s11", "w", None, "k", now, "wkr_a", NewEvent(0, "run_queued", {}, now))
            admission, attempt = await store.admit_claimed(again)
            assert not admission.created and admission.record.run_id == "run_s10" and attempt is None
            assert await store.get("run_s11") is None
            record = await store.get("run_s10")
            assert record is not None and record.status == RunStatus.QUEUED

    async def test_a_delayed_run_admitted_claimed_stays_scheduled(self, make_target):
        async with opened(make_target) as store:
            now = utc_now()
            later = now + timedelta(hours=1)
            first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": None}, now)
            new = NewRun("run_s12", "w", None, None, now, "wkr_a", first, start_at=later)
            admission, attempt = await store.admit_claimed(new)
            assert admission.created and attempt is None
            record = await store.get("run_s12")
            assert record is not None and record.status == RunStatus.SCHEDULED and record.attempt == 0

    async def test_runs_are_counted_by_workflow_and_status(self, make_target):
        async with opened(make_target) as store:
            now = utc_now()
            first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": None}, now)
            for n in range(3):
                await store.admit(NewRun(f"run_c{n}", "w", None, None, now, None, first))
            later = now + timedelta(hours=1)
            await store.admit(NewRun("run_cd", "v", None, None, now, None, first, start_at=later))
            await store.admit(NewRun("run_cx", "x", None, None, now, None, first))  # a workflow not asked about
            await store.finish("run_c0", Outcome(RunStatus.CANCELLED, utc_now()))
            counts = await store.count_runs(["w", "v"], [RunStatus.QUEUED, RunStatus.SCHEDULED], 100)
            assert {key: n for key, n in counts.items() if n} == {
                ("w", RunStatus.QUEUED): 2,
                ("v", RunStatus.SCHEDULED): 1,
            }

"""The store's rules for recoveries and re-runs, on the Durable Objects of a real workerd: a run's
``recoveries`` and ``rerun_of`` are kept and listed, an interrupted run's next claim continues its
attempt, step results taken over at admission are the run's own (in order), and ``list`` filters
on ``rerun_of``. Shaped like the contract suite's store tests (``flue_core.testing.store``), over
the store Worker as ``test_contract_workerd.py`` uses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from flue_cloudflare.devtools import LocalWorker
from flue_cloudflare.devtools.remote_store import RemoteRunStore
from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent, NewRun, Outcome, RunQuery
from flue_core.target import Target
from flue_core.testing.base import ContractBase
from flue_core.testing.store import opened, running_run
from flue_node_like import LocalTarget


def new_run(run_id: str, *, key: str | None = None, at=None, **fields) -> NewRun:  # type: ignore[no-untyped-def]
    """A run of workflow ``w`` for ``wkr_a``; ``fields`` are :class:`NewRun`'s (``rerun_of``, ``steps``)."""
    now = at or utc_now()
    first = NewEvent(0, "run_queued", {"workflow": "w", "input": None, "key": key}, now)
    return NewRun(run_id, "w", None, key, now, "wkr_a", first, **fields)


class TestRecoveryFields(ContractBase):
    @pytest.fixture
    def make_target(self, store_worker: LocalWorker) -> Callable[[], Target]:
        url = f"{store_worker.url}/store/{uuid.uuid4().hex[:16]}"  # a fresh scope: this test's objects only
        return lambda: LocalTarget(RemoteRunStore(url), shutdown_grace=0.2, sweep_interval=0.1)

    async def test_a_rerun_keeps_rerun_of_and_recoveries_in_its_record_and_listing(self, make_target):
        async with opened(make_target) as store:
            admission = await store.admit(new_run("run_r1", rerun_of="run_r0"))
            assert admission.record.rerun_of == "run_r0" and admission.record.recoveries == 0
            await store.claim("run_r1", "wkr_a")
            await store.requeue("run_r1", "wkr_a", held_by="wkr_a", interrupted=True)
            record = await store.get("run_r1")
            assert record is not None and record.rerun_of == "run_r0" and record.recoveries == 1
            (listed,) = await store.list(RunQuery())
            assert listed.rerun_of == "run_r0" and listed.recoveries == 1

    async def test_an_interrupted_run_continues_the_same_attempt(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_r2", "wkr_a")
            requeued = await store.requeue("run_r2", "wkr_b", held_by="wkr_a", interrupted=True)
            assert requeued is not None and requeued.status == RunStatus.QUEUED and requeued.recoveries == 1
            attempt = await store.claim("run_r2", "wkr_b")
            assert attempt is not None and attempt.resumed and attempt.record.attempt == 1
            assert attempt.record.recoveries == 1

    async def test_a_requeue_that_is_no_interruption_starts_a_new_attempt(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_r3", "wkr_a")
            await store.requeue("run_r3", "wkr_a", held_by="wkr_a", interrupted=True)
            await store.claim("run_r3", "wkr_a")
            requeued = await store.requeue("run_r3", "wkr_a", held_by="wkr_a")
            assert requeued is not None and requeued.recoveries == 1
            attempt = await store.claim("run_r3", "wkr_a")
            assert attempt is not None and not attempt.resumed and attempt.record.attempt == 2

    async def test_an_interrupted_requeue_by_a_worker_that_lost_the_run_changes_nothing(self, make_target):
        async with opened(make_target) as store:
            await running_run(store, "run_r4", "wkr_a")
            assert await store.requeue("run_r4", None, held_by="wkr_b", interrupted=True) is None
            record = await store.get("run_r4")
            assert record is not None and record.status == RunStatus.RUNNING and record.recoveries == 0

    async def test_steps_taken_over_at_admission_come_first_in_their_order(self, make_target):
        async with opened(make_target) as store:
            steps = (("second", '"b"'), ("first", '"a"'), ("third", '"c"'))
            await store.admit(new_run("run_r5", rerun_of="run_r0", steps=steps))
            await store.claim("run_r5", "wkr_a")
            await store.save_step("run_r5", "fourth", '"d"')
            await store.save_step("run_r5", "first", '"changed"')  # stored once: the first value stays
            assert list((await store.load_steps("run_r5")).items()) == [*steps, ("fourth", '"d"')]

    async def test_steps_taken_over_by_a_keyed_admission_claimed_are_stored(self, make_target):
        async with opened(make_target) as store:
            steps = (("z", "1"), ("a", "2"))
            admission, attempt = await store.admit_claimed(new_run("run_r6", key="k", rerun_of="run_r0", steps=steps))
            assert admission.created and attempt is not None and attempt.record.rerun_of == "run_r0"
            assert list((await store.load_steps("run_r6")).items()) == list(steps)
            again, _ = await store.admit_claimed(new_run("run_r7", key="k", rerun_of="run_r0", steps=(("x", "3"),)))
            assert not again.created and again.record.run_id == "run_r6"
            assert await store.load_steps("run_r7") == {}

    async def test_list_keeps_the_reruns_of_one_run(self, make_target):
        async with opened(make_target) as store:
            base = utc_now() - timedelta(seconds=10)
            for n, rerun_of in enumerate(("run_x", None, "run_y", "run_x")):
                await store.admit(new_run(f"run_l{n}", at=base + timedelta(seconds=n), rerun_of=rerun_of))
            assert [r.run_id for r in await store.list(RunQuery(rerun_of="run_x"))] == ["run_l3", "run_l0"]
            assert [r.run_id for r in await store.list(RunQuery(rerun_of="run_x", limit=1))] == ["run_l3"]
            assert await store.list(RunQuery(rerun_of="run_none")) == []
            await store.claim("run_l0", "wkr_a")
            await store.finish("run_l0", Outcome(RunStatus.COMPLETED, utc_now()))
            found = await store.list(RunQuery(rerun_of="run_x", status=RunStatus.COMPLETED))
            assert [r.run_id for r in found] == ["run_l0"]

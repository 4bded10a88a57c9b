"""Contract: runs of a process that died or stopped never stay unfinished."""

from __future__ import annotations

import anyio

from flue_core import RunStatus, runs, workflows
from flue_core.models import utc_now
from flue_core.store import NewEvent, NewRun, WorkerInfo
from flue_core.testing.base import CALLS, CONTRACT_WORKFLOWS, GATES, ContractBase, all_events, gated, wait_for_event
from flue_core.target import Target

DEAD = WorkerInfo("wkr_dead", "host-that-died", 1, None, heartbeat_at=0.0)  # lease long expired


async def leave_behind(target: Target, run_id: str, workflow: str, input: dict, *, started: bool, steps: dict[str, str] = {}) -> None:
    """Write what a worker that died mid-run leaves in the store."""
    store = target.store
    await store.open(lambda run_ids: None)
    try:
        await store.heartbeat(DEAD)
        now = utc_now()
        queued = NewEvent(0, "run_queued", {"workflow": workflow, "input": input, "key": None}, now)
        await store.admit(NewRun(run_id, workflow, input, None, now, DEAD.worker_id, queued))
        if started:
            attempt = await store.claim(run_id, DEAD.worker_id)
            assert attempt is not None and attempt.next_index == 1
            store.append(run_id, [NewEvent(1, "run_start", {"workflow": workflow, "attempt": 1}, now)])
            for name, value in steps.items():
                await store.save_step(run_id, name, value)
        await store.flush()
    finally:
        await store.close()


class RecoveryContract(ContractBase):
    async def test_an_interrupted_run_without_retries_fails_as_interrupted(self, make_target, open_runtime, gate):
        name = gate()
        await leave_behind(make_target(), "run_orphan1", "contract-gated", {"gate": name}, started=True)
        async with open_runtime() as rt:
            record = await runs.wait("run_orphan1", timeout=10)
            assert record.status == RunStatus.FAILED and record.error.code == "run_interrupted"
            assert [e.type for e in await all_events(rt, "run_orphan1")] == ["run_queued", "run_start", "run_end"]

    async def test_an_interrupted_run_with_retries_is_resumed_with_steps_replayed(self, make_target, open_runtime, gate):
        name = gate()
        await leave_behind(
            make_target(), "run_orphan2", "contract-gated-retry", {"gate": name}, started=True, steps={"first": "41"}
        )
        GATES[name].set()
        async with open_runtime() as rt:
            assert await runs.result("run_orphan2", timeout=10) == "attempt 2, first=41"
            assert CALLS[f"{name}:first"] == 0  # replayed from storage, not run again
            types = [e.type for e in await all_events(rt, "run_orphan2")]
            assert types == ["run_queued", "run_start", "run_interrupted", "run_start", "step", "run_end"]

    async def test_a_queued_run_of_a_dead_worker_is_executed(self, make_target, open_runtime):
        await leave_behind(make_target(), "run_orphan3", "contract-noinput", None, started=False)
        async with open_runtime():
            assert await runs.result("run_orphan3", timeout=10) == "done"

    async def test_shutdown_ends_a_run_that_cannot_retry(self, open_runtime, gate):
        async with open_runtime() as rt:
            receipt = await workflows.start(gated, input={"gate": gate()})
            await wait_for_event(rt, receipt.run_id, "waiting")
        async with open_runtime():
            record = await runs.get(receipt.run_id)
            assert record is not None and record.status == RunStatus.FAILED
            assert record.error.code == "run_interrupted"

    async def test_shutdown_hands_back_a_run_that_can_retry(self, open_runtime, gate):
        name = gate()
        async with open_runtime() as rt:
            receipt = await workflows.start(CONTRACT_WORKFLOWS[3], input={"gate": name})
            with anyio.fail_after(5):
                while CALLS[f"{name}:first"] == 0:
                    await anyio.sleep(0.01)
        GATES[name].set()
        async with open_runtime() as rt:
            assert await runs.result(receipt.run_id, timeout=10) == "attempt 2, first=1"
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types.count("run_interrupted") == 1 and types[-1] == "run_end"

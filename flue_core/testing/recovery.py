"""Contract: runs of a process that died or stopped never stay unfinished, and an interruption is
not a failure: the same attempt resumes by replay, up to the workflow's ``max_recoveries``."""

from __future__ import annotations

import anyio

from flue_core import RunStatus, runs, workflows
from flue_core.models import utc_now
from flue_core.store import NewEvent, NewRun, WorkerInfo
from flue_core.testing.base import CALLS, GATES, ContractBase, all_events, gated_retry, resumable, wait_for_event
from flue_core.target import Target

DEAD = WorkerInfo("wkr_dead", "host-that-died", 1, None, heartbeat_at=0.0)  # lease long expired


async def leave_behind(
    target: Target,
    run_id: str,
    workflow: str,
    input: dict,
    *,
    started: bool,
    steps: dict[str, str] = {},
    recoveries: int = 0,
) -> None:
    """Write what a worker that died mid-run leaves in the store (after ``recoveries`` earlier
    interruptions, each handed back and resumed)."""
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
            for _ in range(recoveries):
                assert await store.requeue(run_id, DEAD.worker_id, held_by=DEAD.worker_id, interrupted=True) is not None
                attempt = await store.claim(run_id, DEAD.worker_id)
                assert attempt is not None and attempt.resumed and attempt.record.attempt == 1
        await store.flush()
    finally:
        await store.close()


class RecoveryContract(ContractBase):
    async def test_an_interrupted_run_resumes_its_attempt_by_replay_whatever_its_retries(self, make_target, open_runtime, gate):
        name = gate()
        await leave_behind(make_target(), "run_orphan0", "contract-resumable", {"gate": name}, started=True, steps={"first": "41"})
        GATES[name].set()
        async with open_runtime() as rt:
            assert await runs.result("run_orphan0", timeout=10) == "attempt 1, first=41"
            assert CALLS[f"{name}:first"] == 0  # replayed from storage, not run again
            record = await runs.get("run_orphan0")
            assert record.attempt == 1 and record.recoveries == 1
            events = await all_events(rt, "run_orphan0")
            assert [e.type for e in events] == ["run_queued", "run_start", "run_interrupted", "run_resume", "waiting", "run_end"]
            assert events[2].data == {"attempt": 1, "action": "resume", "reason": "died", "recoveries": 1}

    async def test_past_max_recoveries_a_run_fails_with_recovery_limit(self, make_target, open_runtime, gate):
        name = gate()
        await leave_behind(make_target(), "run_orphan4", "contract-recover-twice", {"gate": name}, started=True, recoveries=2)
        async with open_runtime() as rt:
            record = await runs.wait("run_orphan4", timeout=10)
            assert record.status == RunStatus.FAILED and record.error.code == "recovery_limit"
            assert record.recoveries == 2 and "max_recoveries (2)" in record.error.message
            events = await all_events(rt, "run_orphan4")
            assert [e.type for e in events] == ["run_queued", "run_start", "run_interrupted", "run_end"]
            assert events[2].data["action"] == "fail"

    async def test_with_max_recoveries_0_an_interrupted_run_without_retries_fails_as_interrupted(
        self, make_target, open_runtime, gate
    ):
        name = gate()
        await leave_behind(make_target(), "run_orphan1", "contract-unrecoverable", {"gate": name}, started=True)
        async with open_runtime() as rt:
            record = await runs.wait("run_orphan1", timeout=10)
            assert record.status == RunStatus.FAILED and record.error.code == "run_interrupted"
            assert [e.type for e in await all_events(rt, "run_orphan1")] == ["run_queued", "run_start", "run_end"]

    async def test_with_max_recoveries_0_an_interrupted_run_with_retries_is_retried_with_steps_replayed(
        self, make_target, open_runtime, gate
    ):
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

    async def test_a_stop_past_its_grace_hands_the_run_back_to_resume_in_the_next_process(self, open_runtime, gate):
        name = gate()
        async with open_runtime() as rt:
            receipt = await workflows.start(resumable, input={"gate": name})
            await wait_for_event(rt, receipt.run_id, "waiting")
        GATES[name].set()
        async with open_runtime() as rt:
            assert await runs.result(receipt.run_id, timeout=10) == "attempt 1, first=1"
            assert CALLS[f"{name}:first"] == 1  # the step completed before the stop is not run again
            record = await runs.get(receipt.run_id)
            assert record.attempt == 1 and record.recoveries == 1
            events = await all_events(rt, receipt.run_id)
            interrupted = [e for e in events if e.type == "run_interrupted"]
            assert len(interrupted) == 1 and interrupted[0].data["reason"] == "stopped"
            assert interrupted[0].data["action"] == "resume"
            assert [e.type for e in events][-3:] == ["run_resume", "waiting", "run_end"]

    async def test_with_max_recoveries_0_a_stop_hands_back_a_run_that_can_retry(self, open_runtime, gate):
        name = gate()
        async with open_runtime() as rt:
            receipt = await workflows.start(gated_retry, input={"gate": name})
            with anyio.fail_after(5):
                while CALLS[f"{name}:first"] == 0:
                    await anyio.sleep(0.01)
        GATES[name].set()
        async with open_runtime() as rt:
            assert await runs.result(receipt.run_id, timeout=10) == "attempt 2, first=1"
            types = [e.type for e in await all_events(rt, receipt.run_id)]
            assert types.count("run_interrupted") == 1 and types[-1] == "run_end"

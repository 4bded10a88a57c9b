"""Contract: a finished run is re-run as a new run that takes over its stored steps up to a step."""

from __future__ import annotations

import pytest

from flue_core import RunStatus, runs, workflows
from flue_core.errors import InvalidRerun, RunNotFound, RunUnfinished
from flue_core.testing.base import CALLS, GATES, ContractBase, all_events, gated, rerunnable, wait_for_event


class RerunContract(ContractBase):
    async def test_a_failed_run_is_rerun_with_its_stored_steps_replayed(self, open_runtime, gate):
        name = gate()
        async with open_runtime() as rt:
            failed = await workflows.start(rerunnable, input={"gate": name, "fail_first": 1})
            assert (await runs.wait(failed.run_id, timeout=10)).status == RunStatus.FAILED
            old_events = await all_events(rt, failed.run_id)
            again = await runs.rerun(failed.run_id)
            assert again.run_id != failed.run_id and again.workflow == "contract-rerunnable"
            assert await runs.result(again.run_id, timeout=10) == {"a": 1, "b": 1}
            assert CALLS[f"{name}:a"] == 1 and CALLS[f"{name}:b"] == 1  # taken over, not run again
            record = await runs.get(again.run_id)
            assert record.rerun_of == failed.run_id and record.attempt == 1
            assert record.input == {"gate": name, "fail_first": 1}
            page = await runs.list(rerun_of=failed.run_id)
            assert [r.run_id for r in page.runs] == [again.run_id]
            events = await all_events(rt, again.run_id)
            assert events[0].type == "run_queued" and events[0].data["rerunOf"] == failed.run_id
            assert events[0].data["reusedSteps"] == ["a", "b"]
            assert await all_events(rt, failed.run_id) == old_events  # the old run's stream stays closed

    async def test_a_rerun_from_a_step_runs_it_and_what_follows_again(self, open_runtime, gate):
        name = gate()
        async with open_runtime():
            done = await workflows.start(rerunnable, input={"gate": name})
            assert await runs.result(done.run_id, timeout=10) == {"a": 1, "b": 1}
            again = await runs.rerun(done.run_id, from_step="b")
            assert await runs.result(again.run_id, timeout=10) == {"a": 1, "b": 2}
            assert CALLS[f"{name}:a"] == 1 and CALLS[f"{name}:b"] == 2
            from_first = await runs.rerun(again.run_id, from_step="a")
            assert await runs.result(from_first.run_id, timeout=10) == {"a": 2, "b": 3}
            assert (await runs.get(from_first.run_id)).rerun_of == again.run_id

    async def test_a_failed_step_named_as_from_step_takes_over_every_stored_result(self, open_runtime, gate):
        name = gate()
        async with open_runtime():
            failed = await workflows.start(rerunnable, input={"gate": name, "fail_first": 1})
            await runs.wait(failed.run_id, timeout=10)
            again = await runs.rerun(failed.run_id, from_step="the-step-that-failed")
            assert await runs.result(again.run_id, timeout=10) == {"a": 1, "b": 1}

    async def test_bad_reruns_are_refused_and_create_no_run(self, open_runtime, gate):
        name = gate()
        async with open_runtime() as rt:
            done = await workflows.start(rerunnable, input={"gate": name})
            await runs.result(done.run_id, timeout=10)
            with pytest.raises(InvalidRerun):
                await runs.rerun(done.run_id, from_step="no-such-step")
            with pytest.raises(InvalidRerun):
                await runs.rerun(done.run_id, from_step="#sleep")
            with pytest.raises(RunNotFound):
                await runs.rerun("run_unknown")
            going = await workflows.start(gated, input={"gate": name})
            await wait_for_event(rt, going.run_id, "waiting")
            with pytest.raises(RunUnfinished):
                await runs.rerun(going.run_id)
            GATES[name].set()
            assert (await runs.list(rerun_of=done.run_id)).runs == []

"""Contract: inspection (get, list with filters and strict cursors, result)."""

from __future__ import annotations

import pytest

from flue_core import InvalidCursor, RunFailed, RunNotFinished, RunNotFound, RunStatus, runs, workflows
from flue_core.errors import InvalidQuery
from flue_core.testing.base import ContractBase, fail, gated, greet, no_input


class InspectionContract(ContractBase):
    async def test_get_of_an_unknown_run_is_none(self, open_runtime):
        async with open_runtime():
            assert await runs.get("run_unknown") is None

    async def test_a_timeout_of_0_reads_once_and_answers(self, open_runtime, gate):
        async with open_runtime():
            done = (await workflows.start(no_input)).run_id
            await runs.wait(done, timeout=5)
            assert await runs.result(done, timeout=0) == "done"
            assert (await runs.wait(done, timeout=0)).status == RunStatus.COMPLETED
            with pytest.raises(RunNotFound):
                await runs.result("run_unknown", timeout=0)
            going = (await workflows.start(gated, input={"gate": gate()})).run_id
            with pytest.raises(RunNotFinished):
                await runs.wait(going, timeout=0)

    async def test_list_is_newest_first_and_filters(self, open_runtime):
        async with open_runtime():
            greeted = [(await workflows.start(greet, input={"name": str(i)})).run_id for i in range(3)]
            plain = [(await workflows.start(no_input)).run_id for _ in range(2)]
            failed = (await workflows.start(fail)).run_id
            for run_id in greeted + plain + [failed]:
                await runs.wait(run_id, timeout=5)
            everything = await runs.list()
            assert [r.run_id for r in everything.runs] == list(reversed(greeted + plain + [failed]))
            assert everything.next_cursor is None
            assert [r.run_id for r in (await runs.list(workflow="contract-greet")).runs] == greeted[::-1]
            assert [r.run_id for r in (await runs.list(status="failed")).runs] == [failed]
            both = await runs.list(workflow="contract-noinput", status=RunStatus.COMPLETED)
            assert [r.run_id for r in both.runs] == plain[::-1]
            assert (await runs.list(workflow="nothing-by-this-name")).runs == []

    async def test_cursors_page_through_every_run_exactly_once(self, open_runtime):
        async with open_runtime():
            ids = [(await workflows.start(no_input)).run_id for _ in range(23)]
            seen, cursor, pages = [], None, 0
            while True:
                page = await runs.list(limit=5, cursor=cursor)
                seen.extend(r.run_id for r in page.runs)
                pages += 1
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == ids[::-1] and pages == 5

    async def test_cursors_keep_their_filter_position(self, open_runtime):
        async with open_runtime():
            ids = [(await workflows.start(greet, input={"name": "日報"})).run_id for _ in range(4)]
            await workflows.start(no_input)
            first = await runs.list(workflow="contract-greet", limit=2)
            second = await runs.list(workflow="contract-greet", limit=2, cursor=first.next_cursor)
            assert [r.run_id for r in first.runs + second.runs] == ids[::-1]
            assert second.next_cursor is None

    @pytest.mark.parametrize("cursor", ["garbage", "", "eyJ4IjoxfQ", "WyIyMDI2IiwxXQ"])
    async def test_a_bad_cursor_is_an_error_not_page_one(self, open_runtime, cursor):
        async with open_runtime():
            await workflows.start(no_input)
            with pytest.raises(InvalidCursor):
                await runs.list(cursor=cursor)

    @pytest.mark.parametrize("arguments", [{"limit": 0}, {"limit": 1001}, {"status": "sleeping"}])
    async def test_bad_list_arguments_are_errors(self, open_runtime, arguments):
        async with open_runtime():
            with pytest.raises(InvalidQuery):
                await runs.list(**arguments)

    async def test_result_raises_for_failures_timeouts_and_unknown_runs(self, open_runtime, gate):
        async with open_runtime():
            failed = await workflows.start(fail)
            with pytest.raises(RunFailed) as caught:
                await runs.result(failed.run_id, timeout=5)
            assert caught.value.details["run_id"] == failed.run_id
            waiting = await workflows.start(gated, input={"gate": gate()})
            with pytest.raises(RunNotFinished):
                await runs.result(waiting.run_id, timeout=0.1)
            with pytest.raises(RunNotFound):
                await runs.result("run_unknown", timeout=0.1)

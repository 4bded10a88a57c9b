"""Which starts of a debounced workflow are debounced, under a virtual clock: a schedule's ticks are
not (each tick is one run, started at once), nor are child runs and re-runs (see the contract suite)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flue_core import runs, schedules
from flue_core.testing.flow import FLOW_WORKFLOWS, debounced
from flue_core.testkit import TestEnvironment

pytestmark = pytest.mark.anyio


async def test_each_tick_of_a_schedule_of_a_debounced_workflow_is_a_run_of_its_own_started_at_once() -> None:
    start = datetime(2026, 12, 7, 9, 0, 30, tzinfo=UTC)
    async with TestEnvironment(FLOW_WORKFLOWS, start=start) as env:
        await schedules.create("every-minute", debounced, "* * * * *", input={"gate": "-", "customer": "c", "label": "tick"})
        await env.advance(minutes=3)
        records = (await runs.list(workflow=debounced.name)).runs
        assert len(records) == 3
        assert all(record.debounce_key is None and record.status == "completed" for record in records)
        for record in records:
            first = [event async for event in runs.events(record.run_id)][0]
            assert first.type == "run_queued" and "startAt" not in first.data  # not held for a window

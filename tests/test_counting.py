"""RunStore.count_runs' default (flue_core.counting): counted through list(), a page at a time."""

from __future__ import annotations

import pytest

from flue_core.counting import PAGE
from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent, NewRun, RunStore
from flue_node_like import MemoryStore

pytestmark = pytest.mark.anyio


async def test_the_default_count_pages_through_the_runs_up_to_the_limit_per_status() -> None:
    store = MemoryStore()
    await store.open(lambda run_ids: None)
    now = utc_now()
    first = NewEvent(0, "run_queued", {}, now)
    for n in range(PAGE + 5):
        await store.admit(NewRun(f"run_q{n}", "w" if n % 2 else "v", None, None, now, None, first))
    counted = await RunStore.count_runs(store, ["w", "v"], [RunStatus.QUEUED, RunStatus.WAITING], 10_000)
    assert counted == {("w", RunStatus.QUEUED): (PAGE + 5) // 2, ("v", RunStatus.QUEUED): (PAGE + 6) // 2}
    capped = await RunStore.count_runs(store, ["w", "v"], [RunStatus.QUEUED], 10)
    assert sum(capped.values()) == 10
    await store.close()

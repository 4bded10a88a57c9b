"""Counting runs by workflow and status without holding the event loop: :meth:`RunStore.count_runs`'s default."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import anyio.lowlevel

from flue_core.models import RunStatus
from flue_core.store import RunQuery

if TYPE_CHECKING:
    from flue_core.store import RunStore

#: Records per page: what one turn of the event loop builds at most.
PAGE = 200


async def count_by_listing(
    store: RunStore, workflows: Collection[str], statuses: Collection[RunStatus], limit: int
) -> dict[tuple[str, RunStatus], int]:
    """Page through ``store.list`` per status, newest first, up to ``limit`` runs per status, yielding
    to the event loop between pages."""
    wanted = set(workflows)
    counts: dict[tuple[str, RunStatus], int] = {}
    for status in statuses:
        seen, after = 0, None
        while seen < limit:
            size = min(PAGE, limit - seen)
            page = await store.list(RunQuery(status=status, limit=size, after=after))
            for record in page:
                if record.workflow in wanted:
                    key = (record.workflow, status)
                    counts[key] = counts.get(key, 0) + 1
            seen += len(page)
            if len(page) < size:
                break
            after = (page[-1].created_at, page[-1].run_id)
            await anyio.lowlevel.checkpoint()
    return counts

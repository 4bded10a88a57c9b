"""Starting runs from host code: ``await workflows.start(wf, input=...)``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flue_core.admission import admit
from flue_core.definition import Workflow
from flue_core.models import RunReceipt
from flue_core.runtime import Runtime, current_runtime


async def start(
    workflow: Workflow | str,
    *,
    input: Any = None,
    key: str | None = None,
    at: datetime | None = None,
    delay: float | None = None,
    priority: int | None = None,
    runtime: Runtime | None = None,
) -> RunReceipt:
    """Admit a run of ``workflow`` (the object, or its registered name) and return its receipt.

    Exactly the admission ``POST /workflows/<name>`` performs: the input is validated and snapshotted
    before anything is stored, admission policies apply, the run is persisted with its stream and
    first event, then scheduled. Returns once admitted, never waiting for the run to finish; use
    ``runs.result(receipt.run_id)`` to wait. With ``key``, repeated calls (also concurrent ones)
    return the same receipt and never create a second run. With ``at`` (a timezone-aware datetime)
    or ``delay`` (seconds), the run is admitted now as ``scheduled`` and executes from then on; an
    ``at`` that has passed (however long ago) or a ``delay`` of 0 starts it at once, as without them.
    ``priority`` (-100 to 100; default: the workflow's, else 0) orders the runs that wait for a
    slot: higher first, first come first within one priority. A debounced workflow's start may
    fold into its pending run: the receipt then names that run.
    """
    return await admit(
        current_runtime(runtime), workflow, input, key=key, source="python", at=at, delay=delay, priority=priority
    )


def start_sync(
    workflow: Workflow | str,
    *,
    input: Any = None,
    key: str | None = None,
    at: datetime | None = None,
    delay: float | None = None,
    priority: int | None = None,
    runtime: Runtime | None = None,
) -> RunReceipt:
    """:func:`start` for sync code on another thread than the runtime's event loop (a sync scheduler
    callback, a worker thread, a sync web view). Blocks until the run is admitted."""
    rt = current_runtime(runtime)
    return rt.call_sync(_start, rt, workflow, input, key, at, delay, priority)


async def _start(
    rt: Runtime,
    workflow: Workflow | str,
    input: Any,
    key: str | None,
    at: datetime | None,
    delay: float | None,
    priority: int | None,
) -> RunReceipt:
    return await admit(rt, workflow, input, key=key, source="python", at=at, delay=delay, priority=priority)

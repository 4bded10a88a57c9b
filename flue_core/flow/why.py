"""What a run that has not started waits for (:class:`~flue_core.models.QueuedFor`), told from its
record, its workflow's limits and the runs that hold them, when the run is read."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from flue_core.models import QueuedFor, RunRecord, RunStatus, format_timestamp, utc_now
from flue_core.store import RunQuery

if TYPE_CHECKING:
    from flue_core.runtime import Runtime


async def explain(runtime: Runtime, records: Iterable[RunRecord]) -> list[RunRecord]:
    """``records`` with ``queued_for`` told for each ``queued`` run (and each ``scheduled`` one in a
    debounce window); the store is asked once per workflow and key, whatever the number of runs."""
    answers: dict[tuple[str, str | None, str | None, bool], QueuedFor | None] = {}
    told = []
    for record in records:
        if record.status == RunStatus.QUEUED:
            place = (record.workflow, record.concurrency_key, record.rate_key, record.started_at is None)
            if place not in answers:
                answers[place] = await _queued(runtime, record)
            record = record.model_copy(update={"queued_for": answers[place]})
        elif record.status == RunStatus.SCHEDULED and record.waiting_for is not None and record.waiting_for.kind == "debounce":
            record = record.model_copy(update={"queued_for": _debounced(record)})
        told.append(record)
    return told


def _debounced(record: RunRecord) -> QueuedFor:
    until = record.wake_at
    when = "" if until is None else f" until {format_timestamp(until)}"
    return QueuedFor(
        kind="debounce",
        key=record.debounce_key,
        until=until,
        message=f"Its debounce window{_of(record.debounce_key)}{when}: a start with the same key meanwhile moves it.",
    )


async def _queued(runtime: Runtime, record: RunRecord) -> QueuedFor | None:
    workflow = runtime.registry.get(record.workflow)
    if workflow is None:  # a runtime that only reads (`flue runs`) knows no limits to tell of
        return None
    limits = workflow.limits
    store = runtime.target.store
    if limits is not None and limits.concurrency is not None:
        query = RunQuery(
            workflow=record.workflow, status=RunStatus.RUNNING, concurrency_key=record.concurrency_key, limit=limits.concurrency
        )
        running = len(await store.list(query))
        if running >= limits.concurrency:
            whose = "the workflow" if record.concurrency_key is None else f"key {record.concurrency_key!r}"
            return QueuedFor(
                kind="slot",
                key=record.concurrency_key,
                running=running,
                limit=limits.concurrency,
                message=f"A slot of {whose}: {running} of {limits.concurrency} running.",
            )
    if limits is not None and limits.rate is not None and limits.per is not None and record.started_at is None:
        since = utc_now() - timedelta(seconds=limits.per)
        query = RunQuery(workflow=record.workflow, rate_key=record.rate_key, started_after=since, limit=limits.rate)
        starts = sorted(run.started_at for run in await store.list(query) if run.started_at is not None)
        if len(starts) >= limits.rate:
            until = starts[len(starts) - limits.rate] + timedelta(seconds=limits.per)
            return QueuedFor(
                kind="rate_limit",
                key=record.rate_key,
                until=until,
                message=f"The rate limit{_of(record.rate_key)} ({limits.rate} per {limits.per:g} s) until {format_timestamp(until)}.",
            )
    return QueuedFor(kind="worker", message="A free worker slot: it starts when a process executing its workflow has room.")


def _of(key: str | None) -> str:
    return "" if key is None else f" of key {key!r}"

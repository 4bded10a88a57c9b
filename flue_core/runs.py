"""Inspecting runs: ``get``, ``list``, ``result``, ``events`` and ``cancel``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from flue_core import arguments
from flue_core.cursors import decode_cursor, encode_cursor
from flue_core.errors import RunAlreadyFinished, RunCancelled, RunFailed, RunNotFinished, RunNotFound
from flue_core.limits import MAX_LIST_LIMIT
from flue_core.models import Event, RunPage, RunRecord, RunStatus, utc_now
from flue_core.offsets import parse_offset
from flue_core.plugins import has_implementations, notify
from flue_core.runtime import Runtime, current_runtime
from flue_core.store import Outcome, RunQuery, RunStore

if TYPE_CHECKING:
    from flue_core.streams.store import StreamStore

READ_PAGE = 1000
#: How long a waiting reader trusts change notifications before looking at the store again. Stores
#: shared between processes only hear of their own writes, so they are looked at more often.
RECHECK_SHARED = 1.0
RECHECK_PRIVATE = 30.0


def recheck_interval(store: RunStore | StreamStore) -> float:
    """Seconds a waiting reader of a run or stream ``store`` trusts notifications before reading the store again."""
    return RECHECK_SHARED if store.capabilities.shared else RECHECK_PRIVATE


async def get(run_id: str, *, runtime: Runtime | None = None) -> RunRecord | None:
    """The run's record, or ``None`` if no such run exists (or ``run_id`` cannot name one)."""
    store = current_runtime(runtime).target.store
    return await store.get(run_id) if arguments.is_run_id(run_id) else None


async def list(
    *,
    workflow: str | None = None,
    status: RunStatus | str | None = None,
    limit: int | str = 50,
    cursor: str | None = None,
    runtime: Runtime | None = None,
) -> RunPage:
    """Runs newest first, optionally of one workflow and/or status, ``limit`` (1-1000) per page.
    Arguments are parsed by :func:`list_query` (a query string's text is accepted as it is).

    Pass the page's ``next_cursor`` to get the next page; a cursor not made by this function raises
    :class:`~flue_core.errors.InvalidCursor`.
    """
    query = list_query(workflow=workflow, status=status, limit=limit, cursor=cursor)
    store = current_runtime(runtime).target.store
    records = await store.list(replace(query, limit=query.limit + 1))
    more = len(records) > query.limit
    records = records[: query.limit]
    return RunPage(runs=records, next_cursor=encode_cursor(records[-1]) if more else None)


def list_query(*, workflow: Any = None, status: Any = None, limit: Any = 50, cursor: Any = None) -> RunQuery:
    """The one parser of a listing's arguments, for ``runs.list`` and ``GET /runs`` alike: ``limit``
    an integer (or its text) from 1 to ``MAX_LIST_LIMIT``, ``status`` a :class:`RunStatus` value,
    ``workflow`` a workflow name, ``cursor`` one this listing returned. Raises :class:`InvalidQuery`
    or :class:`~flue_core.errors.InvalidCursor`."""
    return RunQuery(
        workflow=arguments.workflow_name(workflow),
        status=arguments.status(status),
        limit=arguments.integer("limit", limit, minimum=1, maximum=MAX_LIST_LIMIT),
        after=None if cursor is None else decode_cursor(cursor),
    )


async def result(run_id: str, *, timeout: float | None = None, runtime: Runtime | None = None) -> Any:
    """Wait for the run to end and return its result.

    Raises :class:`RunFailed` (with the run's error) or :class:`RunCancelled` when it did not
    complete, :class:`RunNotFinished` after ``timeout`` seconds, :class:`RunNotFound`.
    """
    record = await wait(run_id, timeout=timeout, runtime=runtime)
    if record.status == RunStatus.COMPLETED:
        return record.result
    if record.status == RunStatus.CANCELLED:
        raise RunCancelled(f"Run {run_id} was cancelled.", details={"run_id": run_id})
    error = record.error
    raise RunFailed(
        f"Run {run_id} failed: {error.message if error else 'unknown error'}",
        details={"run_id": run_id, "error": error.model_dump(exclude_none=True) if error else None},
    )


async def wait(run_id: str, *, timeout: float | None = None, runtime: Runtime | None = None) -> RunRecord:
    """Wait until the run has ended and return its final record (whatever the outcome)."""
    rt = current_runtime(runtime)
    store = rt.target.store
    timeout = arguments.seconds("timeout", timeout)
    _known_form(run_id)
    with rt.changes.watch(run_id) as watch, anyio.move_on_after(timeout):
        while True:
            record = await store.get(run_id)
            if record is None:
                raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
            if record.finished:
                return record
            await watch.wait(recheck_interval(store))
    raise RunNotFinished(f"Run {run_id} has not finished after {timeout} s.", details={"run_id": run_id})


async def events(
    run_id: str, *, offset: str = "-1", follow: bool = False, runtime: Runtime | None = None
) -> AsyncIterator[Event]:
    """The run's events strictly after ``offset`` (``"-1"``: all, ``"now"``: only new ones).

    With ``follow``, keeps waiting for new events until ``run_end``; without, stops at the current
    end. Resume a broken read by passing the last event's ``offset``.
    """
    rt = current_runtime(runtime)
    store = rt.target.store
    after = parse_offset(offset)
    _known_form(run_id)
    recheck = recheck_interval(store)
    with rt.changes.watch(run_id) as watch:
        page = await store.read(run_id, after, READ_PAGE)
        if page is None:
            raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
        if after is None:
            after = page.tail
        while True:
            for stored in page.events:
                yield stored.parse()
                after = stored.index
            caught_up = after >= page.tail
            if caught_up and (page.closed or not follow):
                return
            if caught_up:
                await watch.wait(recheck)
            page = await store.read(run_id, after, READ_PAGE)
            if page is None:
                return


async def cancel(run_id: str, *, wait_for: float = 5.0, runtime: Runtime | None = None) -> RunRecord:
    """Cancel the run: a queued run ends ``cancelled`` at once; a running one is cancelled at its next
    await (wherever it executes). Returns the record after up to ``wait_for`` seconds of waiting for
    the end. Cancelling an ended run changes nothing."""
    rt = current_runtime(runtime)
    store = rt.target.store
    wait_for = arguments.seconds("wait_for", wait_for)
    _known_form(run_id)
    record = await store.request_cancel(run_id)
    if record is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    if record.finished:
        return record
    if record.status == RunStatus.QUEUED:
        outcome = Outcome(RunStatus.CANCELLED, utc_now())
        final = await store.finish(run_id, outcome, only_from=RunStatus.QUEUED)
        if final is not None and final.status == RunStatus.CANCELLED:
            if has_implementations(rt.pm.hook.flue_run_finished):
                await notify(rt.pm.hook.flue_run_finished, run=final)
            return final
    await rt.target.cancel(run_id)
    try:
        return await wait(run_id, timeout=wait_for, runtime=rt)
    except RunNotFinished:
        latest = await store.get(run_id)
        assert latest is not None
        return latest


def refuse_finished(record: RunRecord) -> RunRecord:
    """``record`` after a cancel, unless the run had ended otherwise than ``cancelled``: then
    :class:`RunAlreadyFinished` (what ``POST /runs/<id>/cancel`` and ``flue cancel`` answer)."""
    if record.finished and record.status != RunStatus.CANCELLED:
        raise RunAlreadyFinished(
            f"Run {record.run_id} already ended {record.status.value}; there is nothing to cancel.",
            details={"run_id": record.run_id, "status": record.status.value},
        )
    return record


def _known_form(run_id: str) -> None:
    """A string that cannot be a run id names no run: the same :class:`RunNotFound` as an unknown id."""
    if not arguments.is_run_id(run_id):
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": ascii(run_id)})

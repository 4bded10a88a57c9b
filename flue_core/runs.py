"""Inspecting runs: ``get``, ``list``, ``result``, ``events`` and ``cancel``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from flue_core import arguments, signals
from flue_core.cursors import decode_cursor, encode_cursor
from flue_core.errors import RunCancelled, RunFailed, RunFinished, RunNotFinished, RunNotFound
from flue_core.execution import finish_run
from flue_core.flow.why import explain
from flue_core.limits import MAX_LIST_LIMIT
from flue_core.models import Event, RunPage, RunReceipt, RunRecord, RunStatus, SignalReceipt, utc_now
from flue_core.rerun import rerun as _rerun
from flue_core.offsets import parse_offset
from flue_core.runtime import Runtime, current_runtime
from flue_core.store import Outcome, RunQuery, RunStore

if TYPE_CHECKING:
    from flue_core.streams.store import StreamStore

READ_PAGE = 1000
#: How long a waiting reader trusts change notifications before looking at the store again. A store
#: shared between processes without a feed of their changes (``Capabilities.feed``) hears only of its
#: own writes, so it is looked at more often.
RECHECK_SHARED = 1.0
RECHECK_PRIVATE = 30.0


def recheck_interval(store: RunStore | StreamStore) -> float:
    """Seconds a waiting reader of a run or stream ``store`` trusts notifications before reading the store again."""
    capabilities = store.capabilities
    return RECHECK_SHARED if capabilities.shared and not capabilities.feed else RECHECK_PRIVATE


async def get(run_id: str, *, runtime: Runtime | None = None) -> RunRecord | None:
    """The run's record, or ``None`` if no such run exists (or ``run_id`` cannot name one). A run
    that has not started says what it waits for (``queued_for``)."""
    rt = current_runtime(runtime)
    record = await rt.target.store.get(run_id) if arguments.is_run_id(run_id) else None
    return None if record is None else (await explain(rt, (record,)))[0]


async def list(
    *,
    workflow: str | None = None,
    status: RunStatus | str | None = None,
    limit: int | str = 50,
    cursor: str | None = None,
    parent: str | None = None,
    rerun_of: str | None = None,
    runtime: Runtime | None = None,
) -> RunPage:
    """Runs newest first, optionally of one workflow and/or status, ``limit`` (1-1000) per page;
    with ``parent``, only the child runs of that run; with ``rerun_of``, only its re-runs. Arguments are parsed by :func:`list_query` (a
    query string's text is accepted as it is).

    Pass the page's ``next_cursor`` to get the next page; a cursor not made by this function raises
    :class:`~flue_core.errors.InvalidCursor`.
    """
    query = list_query(workflow=workflow, status=status, limit=limit, cursor=cursor, parent=parent, rerun_of=rerun_of)
    rt = current_runtime(runtime)
    records = await rt.target.store.list(replace(query, limit=query.limit + 1))
    more = len(records) > query.limit
    records = await explain(rt, records[: query.limit])
    return RunPage(runs=records, next_cursor=encode_cursor(records[-1]) if more else None)


def list_query(
    *,
    workflow: Any = None,
    status: Any = None,
    limit: Any = 50,
    cursor: Any = None,
    parent: Any = None,
    rerun_of: Any = None,
) -> RunQuery:
    """The one parser of a listing's arguments, for ``runs.list`` and ``GET /runs`` alike: ``limit``
    an integer (or its text) from 1 to ``MAX_LIST_LIMIT``, ``status`` a :class:`RunStatus` value,
    ``workflow`` a workflow name, ``cursor`` one this listing returned, ``parent`` and ``rerun_of``
    run ids. Raises
    :class:`InvalidQuery` or :class:`~flue_core.errors.InvalidCursor`."""
    return RunQuery(
        workflow=arguments.workflow_name(workflow),
        status=arguments.status(status),
        limit=arguments.integer("limit", limit, minimum=1, maximum=MAX_LIST_LIMIT),
        after=None if cursor is None else decode_cursor(cursor),
        parent=arguments.run_id_filter("parent", parent),
        rerun_of=arguments.run_id_filter("rerun_of", rerun_of),
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
    with rt.changes.watch(run_id) as watch:
        # The store is read at least once, whatever the timeout (0: read once and answer).
        with anyio.move_on_after(timeout):
            record = await _read_once(store, run_id)
            while not record.finished:
                await watch.wait(recheck_interval(store))
                record = await _read_once(store, run_id)
        if record.finished:
            return record
    raise RunNotFinished(f"Run {run_id} has not finished after {timeout} s.", details={"run_id": run_id})


async def _read_once(store: RunStore, run_id: str) -> RunRecord:
    """The run's record, read in full even when the caller's deadline has passed meanwhile."""
    with anyio.CancelScope(shield=True):
        record = await store.get(run_id)
    if record is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    return record


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
    """Cancel the run: a queued, scheduled or waiting run ends ``cancelled`` at once; a running one is
    cancelled at its next await (wherever it executes). Its unfinished child runs are cancelled too,
    and theirs. Returns the record after up to ``wait_for`` seconds of waiting for the end.
    Cancelling an ended run changes nothing."""
    rt = current_runtime(runtime)
    wait_for = arguments.seconds("wait_for", wait_for)
    _known_form(run_id)
    record = await _cancel_tree(rt, run_id)
    if record is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    if record.finished:
        return record
    try:
        return await wait(run_id, timeout=wait_for, runtime=rt)
    except RunNotFinished:
        latest = await rt.target.store.get(run_id)
        assert latest is not None
        return latest


_PARKED = (RunStatus.QUEUED, RunStatus.SCHEDULED, RunStatus.WAITING)


async def _cancel_tree(rt: Runtime, run_id: str) -> RunRecord | None:
    store = rt.target.store
    record = await store.request_cancel(run_id)
    if record is None or record.finished:
        return record
    if record.status in _PARKED:
        final = await finish_run(rt, run_id, Outcome(RunStatus.CANCELLED, utc_now()), only_from=_PARKED)
        if final is not None:
            record = final
    if not record.finished:
        await rt.target.cancel(run_id)
    cursor = None
    while True:  # its children, whose own children follow in turn
        page = await store.list(RunQuery(parent=run_id, limit=READ_PAGE + 1, after=cursor))
        for child in page[:READ_PAGE]:
            if not child.finished:
                await _cancel_tree(rt, child.run_id)
        if len(page) <= READ_PAGE:
            return record
        cursor = (page[READ_PAGE - 1].created_at, page[READ_PAGE - 1].run_id)


async def signal(
    run_id: str, name: str, data: Any = None, *, key: str | None = None, runtime: Runtime | None = None
) -> SignalReceipt:
    """Send the signal ``name`` with JSON ``data`` into the run (see ``ctx.wait_for_signal``).

    The signal is kept in the run's mailbox until a wait for ``name`` takes it; a run waiting for it
    resumes at once. With ``key``, sending again returns the first signal's receipt (``duplicate``)
    and stores nothing, also once the run has ended (a retry learns its signal was received). Raises
    :class:`~flue_core.errors.RunNotFound`, :class:`~flue_core.errors.RunFinished` for an ended run
    (unless ``key`` names a signal it received), :class:`~flue_core.errors.InvalidSignal`
    for a bad name or data (checked against the model the workflow declares for ``name``).
    """
    return await signals.send(current_runtime(runtime), run_id, name, data, key)


async def rerun(
    run_id: str, *, from_step: str | None = None, key: str | None = None, runtime: Runtime | None = None
) -> RunReceipt:
    """Start a new run of the finished run ``run_id``'s workflow with the same input, taking over the
    results of the steps it stored before ``from_step`` (all of them by default), so a run that failed
    at a step after a fix resumes at that step. The new record's ``rerun_of`` names the old run
    (``list(rerun_of=...)`` finds the re-runs). Admission policies apply as for any start (source
    ``"rerun"``). Raises :class:`~flue_core.errors.RunNotFound`, :class:`~flue_core.errors.RunUnfinished`
    for a run that has not ended, :class:`~flue_core.errors.InvalidRerun` for a bad ``from_step``,
    and what admission raises (say :class:`~flue_core.errors.InvalidInput` when the workflow's input
    model no longer accepts the stored input). See :mod:`flue_core.rerun`."""
    return await _rerun(current_runtime(runtime), run_id, from_step=from_step, key=key)


def signal_sync(run_id: str, name: str, data: Any = None, *, key: str | None = None, runtime: Runtime | None = None) -> SignalReceipt:
    """:func:`signal` for sync code on another thread than the runtime's event loop."""
    rt = current_runtime(runtime)
    return rt.call_sync(signals.send, rt, run_id, name, data, key)


def refuse_finished(record: RunRecord) -> RunRecord:
    """``record`` after a cancel, unless the run had ended otherwise than ``cancelled``: then
    :class:`RunFinished` (what ``POST /runs/<id>/cancel`` and ``flue cancel`` answer)."""
    if record.finished and record.status != RunStatus.CANCELLED:
        raise RunFinished(
            f"Run {record.run_id} already ended {record.status.value}; there is nothing to cancel.",
            details={"run_id": record.run_id, "status": record.status.value},
        )
    return record


def _known_form(run_id: str) -> None:
    """A string that cannot be a run id names no run: the same :class:`RunNotFound` as an unknown id."""
    if not arguments.is_run_id(run_id):
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": ascii(run_id)})

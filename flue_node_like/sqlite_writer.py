"""The SQLite store's writer: every pending write of a store, batched into one transaction per hop.

Sequential callers pay one commit each; concurrent callers share commits; events appended without
waiting ride along with the next commit. Each batch runs in one hop to aiosqlite's connection thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import aiosqlite

from flue_core.errors import StoreUnavailable
from flue_core.store import ChangeListener
from flue_node_like.sqlite_connection import in_connection_thread

log = logging.getLogger("flue")

#: Most operations one transaction takes; bounds the latency a batch adds.
BATCH_LIMIT = 1024
UNFINISHED = "('scheduled', 'queued', 'running', 'waiting')"
#: Seconds a writer cancelled from outside keeps committing, waiting for its store to be closed.
CANCELLED_GRACE = 5.0

# An event lands only at the stream's next free position of an unfinished run: no gaps, no overwrites.
_APPEND = (
    "INSERT OR IGNORE INTO flue_events (run_id, idx, data) SELECT ?1, ?2, ?3"
    f" WHERE EXISTS (SELECT 1 FROM flue_runs WHERE run_id = ?1 AND status IN {UNFINISHED})"
    " AND ?2 = (SELECT COALESCE(MAX(idx), -1) + 1 FROM flue_events WHERE run_id = ?1)"
)



class _Op:
    """One queued write: ``apply(conn)`` runs in the transaction; ``future`` gets its result."""

    __slots__ = ("apply", "future", "run_ids", "rows")

    def __init__(
        self,
        apply: Callable[[sqlite3.Connection], Any] | None,
        future: asyncio.Future[Any] | None,
        run_ids: Collection[str],
        rows: list[tuple[str, int, str]] | None = None,
    ) -> None:
        self.apply = apply
        self.future = future
        self.run_ids = run_ids  # a set ``apply`` may add to: what listeners hear of once committed
        self.rows = rows  # event rows (run_id, idx, json): consecutive ones share one executemany


class _OpFailed(Exception):
    """An op raised inside a batch run without savepoints: the batch is run again with them."""


def _apply_batch(conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
    """Run ``ops`` in one transaction; each op's failure is confined to it.

    Ops rarely fail, so the batch first runs without a savepoint per op (a third of the statements of
    a typical batch), with consecutive event rows in one statement; if anything raises, that
    transaction is rolled back and the batch runs again with each op in its own savepoint, and the
    rows of an op that fails are tried one by one: a row that cannot be stored is dropped alone (and
    logged), so one run's bad event never costs another run its writes. Ops only touch the
    connection, so running one twice is safe.
    """
    try:
        return _run_batch(conn, ops, isolated=False)
    except _OpFailed:
        return _run_batch(conn, ops, isolated=True)


def _run_batch(conn: sqlite3.Connection, ops: list[_Op], *, isolated: bool) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        position = 0
        while position < len(ops):
            op = ops[position]
            position += 1
            if op.rows is not None and isolated:
                _append_isolated(conn, op.rows)
                continue
            if op.rows is not None:
                rows = list(op.rows)
                while position < len(ops) and ops[position].rows is not None:
                    rows.extend(ops[position].rows)  # type: ignore[arg-type]
                    position += 1
                try:
                    conn.executemany(_APPEND, rows)
                except Exception as exc:
                    raise _OpFailed from exc
                continue
            if not isolated:
                try:
                    outcomes.append((True, op.apply(conn)))  # type: ignore[misc]
                except Exception as exc:
                    raise _OpFailed from exc
                continue
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op.apply(conn)))  # type: ignore[misc]
                conn.execute("RELEASE op")
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _append_isolated(conn: sqlite3.Connection, rows: list[tuple[str, int, str]]) -> None:
    conn.execute("SAVEPOINT rows")
    try:
        conn.executemany(_APPEND, rows)
        conn.execute("RELEASE rows")
        return
    except Exception:
        conn.execute("ROLLBACK TO rows")
        conn.execute("RELEASE rows")
    for row in rows:
        conn.execute("SAVEPOINT row")
        try:
            conn.execute(_APPEND, row)
            conn.execute("RELEASE row")
        except Exception as exc:
            conn.execute("ROLLBACK TO row")
            conn.execute("RELEASE row")
            # Later events of this run find a gap and are dropped too (streams never have holes).
            log.error("flue: event %s of run %s could not be stored and was dropped: %s", row[1], row[0], exc)


class BatchWriter:
    """Queues writes of one store and commits them in batches, in the order they were queued.

    After each commit, ``on_change`` gets the ids of the runs the batch touched.
    """

    def __init__(self, db: aiosqlite.Connection, path: Path, on_change: ChangeListener) -> None:
        self._db = db
        self._path = path
        self._on_change = on_change
        self._ops: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name=f"flue-sqlite-writer:{path}")

    @property
    def accepting(self) -> bool:
        return not self._closing

    def submit(self, apply: Callable[[sqlite3.Connection], Any], touched: Collection[str] = ()) -> asyncio.Future[Any]:
        """Queue ``apply(conn)``; the future gets its result once the batch holding it commits, and
        the change listener hears of the ids in ``touched`` (a set ``apply`` may add to)."""
        if self._closing:
            raise StoreUnavailable(f"The SQLite store {self._path} is closed.")
        future = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(apply, future, touched))
        self._wake.set()
        return future

    def append(self, run_id: str, rows: list[tuple[str, int, str]]) -> None:
        """Queue event rows without waiting (dropped once the writer is closing)."""
        if self._closing:
            return
        self._ops.append(_Op(None, None, (run_id,), rows))
        self._wake.set()

    async def close(self) -> None:
        """Commit everything queued, then stop. Returns also when the write loop was cancelled from
        outside (an event loop shutting down cancels every task): what it left is failed, not awaited."""
        self._closing = True
        self._wake.set()
        await asyncio.wait([self._task])
        if not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]

    async def _write_loop(self) -> None:
        try:
            try:
                await self._write_all()
            except asyncio.CancelledError:
                # Only an event loop shutting down cancels this task (asyncio cancels every task, say
                # on a second Ctrl-C) while the store's owner may still be ending its runs: keep
                # committing until close(), for a bounded time, so those ends are not lost.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CANCELLED_GRACE):
                        await self._write_all()
        finally:  # nobody will commit what is still queued: its waiters get an error, not a hang
            self._closing = True
            failure = StoreUnavailable(f"The SQLite store {self._path} stopped writing.")
            while self._ops:
                op = self._ops.popleft()
                if op.future is not None and not op.future.done():
                    op.future.set_exception(failure)

    async def _write_all(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                # One turn of the loop lets tasks that are ready right now add their writes to this commit.
                await asyncio.sleep(0)
                count = min(len(self._ops), BATCH_LIMIT)
                ops = [self._ops.popleft() for _ in range(count)]
                try:
                    outcomes = await in_connection_thread(self._db, _apply_batch, ops)
                except BaseException as exc:
                    failure = StoreUnavailable(f"SQLite write to {self._path} failed: {exc}")
                    for op in ops:
                        if op.future is not None and not op.future.done():
                            op.future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                results = iter(outcomes)
                changed: set[str] = set()
                for op in ops:
                    changed.update(op.run_ids)
                    if op.rows is not None:
                        continue
                    ok, value = next(results)
                    if op.future is not None and not op.future.done():
                        if ok:
                            op.future.set_result(value)
                        else:
                            op.future.set_exception(value)
                if changed:
                    self._on_change(changed)
            if self._closing and not self._ops:
                return

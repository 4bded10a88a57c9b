"""The run store's writes: one connection, batches in order, sent again after a lost connection.

Every write of a process goes through one :class:`Writer`. Operations are queued in call order and
sent as batches, each one call of ``apply()`` (``sql/runs.sql``): one transaction, one commit, one
NOTIFY (a batch of admissions alone is one statement: :mod:`~flue_postgres.admissions`). A batch goes as soon as the previous one is answered, so a caller alone pays one round trip,
and callers that come while a batch is out share the next one (32 concurrent admissions cost a few
commits, not 32). Events appended without waiting join the queue like any operation, so an operation
sees every event appended before it.

When the connection breaks, the server restarts or rolls a batch back (a deadlock, a serialization
failure), the writer connects again and sends the unanswered batch again, backing off to a second,
for up to the URL's ``timeout`` from the break; then the batch's callers get
:class:`~flue_core.errors.StoreUnavailable`. A batch may thus arrive twice: the functions recognise an
operation by its id (see ``sql/runs.sql``), so each takes effect once. A batch the server refuses for
another reason is split, so that only the operation at fault fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from flue_core.errors import StoreUnavailable
from flue_core.store import READY, ChangeListener
from flue_postgres.admissions import AdmitMany, fast
from flue_postgres.connection import MAX_BACKOFF, close_quietly, connect, is_transient, translate
from flue_postgres.rows import FRAMES
from flue_postgres.schema import FUNCTION_PREFIX
from flue_postgres.settings import PostgresSettings

log = logging.getLogger("flue.postgres")

__all__ = ["Writer"]

#: Operations sent in one batch at most (a batch is one transaction: its size bounds how long it holds
#: the rows it locks).
BATCH = 256
#: Operations whose loss to a crash of Postgres costs nothing, so that a batch of only these commits
#: without waiting for the disk (``synchronous_commit = off``): a heartbeat (the next one renews it),
#: taking runs from the ready pool and waking due runs (lost, the runs are back in the pool or due,
#: and are taken or woken again; a claim, which waits for the disk, also makes every earlier commit
#: durable, the WAL being written in order).
LAZY = frozenset({"take", "beat", "wake"})


_NEW = ["new"]  # an inserted admission's answer


class _Op:
    __slots__ = ("args", "future")

    def __init__(self, args: list[Any] | None, future: asyncio.Future[Any] | None) -> None:
        self.args = args  # None: a barrier (flush), which sends nothing
        self.future = future


class Writer:
    """See the module docstring. ``origin`` names this store in the change announcements."""

    def __init__(self, settings: PostgresSettings, origin: str, on_change: ChangeListener) -> None:
        self.settings = settings
        self.origin = origin
        self.on_change = on_change
        self._sql = f'SELECT "{settings.schema}".{FUNCTION_PREFIX}apply($1, $2, $3, $4, $5)'
        self._admit_many = AdmitMany(settings)
        self._queue: list[_Op] = []
        self._appends: dict[str, list[tuple[int, str]]] | None = None  # the open append op at the queue's tail
        self._ids = itertools.count()
        self._prefix = origin[:8]
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.closed = True

    async def open(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"flue-postgres-writer:{self.settings.schema}")

    def opid(self) -> str:
        return f"{self._prefix}.{next(self._ids)}"

    def submit(self, args: list[Any]) -> asyncio.Future[Any]:
        """Queue one operation (``[name, opid, arguments...]``); its future gets the answer."""
        if self.closed:
            raise StoreUnavailable(f"The Postgres store {self.settings.url} is closed.")
        future = asyncio.get_running_loop().create_future()
        self._appends = None
        self._queue.append(_Op(args, future))
        self._wake.set()
        return future

    def append(self, run_id: str, events: Sequence[tuple[int, str]]) -> None:
        if self.closed:
            return
        if self._appends is None:
            self._appends = {}
            self._queue.append(_Op(["append", "", self._appends], None))
        self._appends.setdefault(run_id, []).extend(events)
        self._wake.set()

    async def flush(self) -> None:
        """Return once everything queued before is written (or failed)."""
        if self.closed or (not self._queue and not self._busy):
            return
        future = asyncio.get_running_loop().create_future()
        self._appends = None
        self._queue.append(_Op(None, future))
        self._wake.set()
        await future

    async def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), self.settings.timeout)
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for op in self._queue:
            if op.future is not None and not op.future.done():
                op.future.set_exception(StoreUnavailable(f"The Postgres store {self.settings.url} is closed."))
        self._queue = []
        conn, self._conn = self._conn, None
        await close_quietly(conn)

    # -- sending ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._queue and all(op.args is not None and op.args[0] == "append" for op in self._queue):
                # Events alone: give the turn to the code that wrote them, so that the operation that
                # usually follows at once (a run's end after its last events) shares their commit.
                await asyncio.sleep(0)
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                if self._appends is not None and not self._queue:
                    self._appends = None  # the open append op is on its way: later appends open another
                self._busy = True
                try:
                    await self._deliver(batch)
                finally:
                    self._busy = False

    async def _deliver(self, batch: list[_Op]) -> None:
        sent = [op for op in batch if op.args is not None]
        try:
            durable = any(op.args[0] not in LAZY for op in sent)  # type: ignore[index]
            answers = await self._send([_encoded(op.args) for op in sent], durable) if sent else []
        except Exception as exc:
            if len(sent) > 1 and not is_transient(exc) and not isinstance(exc, StoreUnavailable):
                for op in sent:  # refused for a reason of its own: find the operation at fault
                    await self._deliver([op])
                _settle([op for op in batch if op.args is None], None)
                return
            error = translate(exc, self.settings)
            for op in batch:
                if op.future is None:
                    log.warning("flue: events could not be stored in Postgres and were dropped: %s", error)
                elif not op.future.done():
                    op.future.set_exception(error)
            return
        for op, answer in zip(sent, answers, strict=True):
            if op.future is not None and not op.future.done():
                op.future.set_result(answer)
        _settle([op for op in batch if op.args is None], None)

    async def _send(self, ops: list[list[Any]], durable: bool) -> list[Any]:
        payload = json.dumps(ops, ensure_ascii=False, separators=(",", ":"))
        deadline: float | None = None
        backoff = 0.05
        while True:
            try:
                conn = self._conn
                if conn is None or conn.is_closed():
                    self._conn = None
                    conn = self._conn = await connect(self.settings, purpose="writer")
                async with asyncio.timeout(self.settings.timeout):
                    answers, changed = await self._call(conn, ops, payload, durable, deadline is not None)
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, TimeoutError):
                    raise
                if isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError) or not (
                    isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "").startswith("40")
                ):
                    self._drop_connection()
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.settings.timeout
                    log.warning("flue: a write to Postgres failed (%s); sending it again", self.settings.scrub(str(exc)))
                if now + backoff > deadline:
                    raise StoreUnavailable(
                        f"Postgres at {self.settings.url} did not answer for {self.settings.timeout:g} s:"
                        f" {self.settings.scrub(str(exc) or type(exc).__name__)}",
                        details={"url": self.settings.url},
                    ) from None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if changed:
                self.on_change(changed)
            return answers

    async def _call(
        self, conn: asyncpg.Connection, ops: list[list[Any]], payload: str, durable: bool, again: bool
    ) -> tuple[list[Any], list[str]]:
        """One batch: admissions alone by the fast path (:mod:`~flue_postgres.admissions`), and the rest
        — the admissions it did not insert included — by ``apply()``."""
        if not fast(ops):
            return json.loads(await conn.fetchval(self._sql, self.origin, FRAMES, payload, durable, again))
        inserted = await self._admit_many.run(conn, ops, self.origin)
        changed: list[str] = list(inserted)
        if any(op[2] in inserted and (op[7] is None or op[9] is not None) for op in ops):
            changed.append(READY)  # a run entered the pool, or a wake-up time was set
        rest = [op for op in ops if op[2] not in inserted]
        if not rest:
            return [_NEW] * len(ops), changed
        text = await conn.fetchval(self._sql, self.origin, FRAMES, json.dumps(rest, ensure_ascii=False), True, again)
        rest_answers, rest_changed = json.loads(text)
        answers = iter(rest_answers)
        return [_NEW if op[2] in inserted else next(answers) for op in ops], changed + rest_changed

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()


def _encoded(args: list[Any]) -> list[Any]:
    """An operation as JSON: an append op's events grouped by run, flagged when their indexes follow
    each other (the function then stores them in one statement)."""
    if args[0] != "append":
        return args
    runs = []
    for run_id, events in args[2].items():
        first = events[0][0]
        contiguous = all(index == first + n for n, (index, _) in enumerate(events))
        runs.append([run_id, contiguous, events])
    return ["append", "", runs]


def _settle(ops: list[_Op], value: Any) -> None:
    for op in ops:
        if op.future is not None and not op.future.done():
            op.future.set_result(value)


"""General Durable Streams in Postgres: :class:`PostgresStreamStore`, shared by every process on
every host that opens the same URL (tables ``ds_*`` of ``sql/streams.sql``, beside the run store's).

The rules are Flue's own (:mod:`flue_core.streams.rules`, through
:class:`~flue_core.streams.engine.TransactionalStreamStore`), which read and write a synchronous
:class:`~flue_core.streams.rows.StreamTx`. A Postgres transaction is asynchronous, so each operation
runs the rules against what it has fetched so far: when they ask for something not fetched yet (a
stream by path, a fork's source, records, a producer's state, a new id), the fetch is made and the
rules run again from the start — they are pure functions of what they read, and check everything
before writing anything. Once they run through, their writes are made and the transaction commits.

Writes take a transaction-level advisory lock on each path they look up and lock the rows they
read (``FOR UPDATE``), so operations on one stream are serialised across processes; a deadlock
between operations on forks is rolled back by Postgres and the operation runs again. Reads that
change nothing run as ``REPEATABLE READ READ ONLY`` transactions: one snapshot, no locks. Changes are
announced by ``NOTIFY`` in the writing transaction (:class:`~flue_postgres.feed.Feed`).

A write whose connection breaks while it commits may or may not have been applied: it fails with
:class:`~flue_core.errors.StoreUnavailable` rather than being sent again (an append is not idempotent
unless its producer makes it so).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import asyncpg

from flue_core.errors import StoreUnavailable
from flue_core.store import ANY_RUN, Capabilities, ChangeListener
from flue_core.streams.engine import StreamRow, StreamTx, TransactionalStreamStore
from flue_postgres.connection import OutcomeUnknown, Readers, connect, translate
from flue_postgres.feed import Feed
from flue_postgres.schema import ensure_schema
from flue_postgres.settings import PostgresSettings

__all__ = ["PostgresStreamStore"]

T = TypeVar("T")

_COLUMNS = (
    "id, path, content_type, tail, touched_at, ttl, expires_at, closed, closed_by, stream_seq,"
    " fork_of, fork_at, forks, deleted, spec"
)
#: Records fetched at a time; a read stops asking once its byte budget is spent.
_FETCH = 64
#: Times the rules may ask for more before the operation gives up (a stream forked this deep, say).
_MAX_FETCHES = 10_000


class PostgresStreamStore(TransactionalStreamStore):
    """Streams in Postgres, in the URL's schema (:mod:`flue_postgres.settings` documents the URL).
    ``heartbeat``: seconds of silence after which the change feed's connection is probed."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True, feed=True)

    def __init__(self, url: str = "postgres://localhost/flue", *, clock: Callable[[], float] = time.time, heartbeat: float = 5.0) -> None:
        super().__init__(clock=clock)
        self.settings = PostgresSettings.from_url(url)
        self.url = self.settings.url
        self.heartbeat = heartbeat
        self._origin = uuid.uuid4().hex[:16]
        self._channel = f"{self.settings.channel}:ds"
        self._readers: Readers | None = None
        self.feed: Feed | None = None
        self._sql = _Statements(f'"{self.settings.schema}"')

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        conn = await connect(self.settings, purpose="streams")
        try:
            await ensure_schema(conn, self.settings)
        except Exception as exc:
            raise translate(exc, self.settings) from None
        finally:
            conn.terminate()
        feed = Feed(self.settings, self._channel, self._origin, heartbeat=self.heartbeat, parse=_paths, everything=(ANY_RUN,))
        await feed.start(on_change)
        self.feed = feed
        self._readers = Readers(self.settings, "streams")

    async def close(self) -> None:
        feed, self.feed = self.feed, None
        if feed is not None:
            await feed.stop()
        readers, self._readers = self._readers, None
        if readers is not None:
            await readers.close()

    async def _transact(self, work: Callable[[StreamTx], T], *, write: bool = True) -> tuple[T, set[str]]:
        readers = self._readers
        if readers is None:
            raise StoreUnavailable(f"The Postgres stream store {self.url} is closed.")
        return await readers.run(lambda conn: self._attempt(conn, work, write))

    async def _attempt(self, conn: asyncpg.Connection, work: Callable[[StreamTx], T], write: bool) -> tuple[T, set[str]]:
        fetched = _Fetched()
        transaction = conn.transaction(isolation="read_committed" if write else "repeatable_read", readonly=not write)
        await transaction.start()
        try:
            for _ in range(_MAX_FETCHES):
                tx = _Tx(fetched)
                try:
                    result = work(tx)
                except _Missing as missing:
                    await fetched.fetch(conn, self._sql, missing.what, lock=write)
                    continue
                if write:
                    await tx.write(conn, self._sql)
                    if tx.changed:
                        payload = json.dumps([self._origin, sorted(tx.changed)])
                        if len(payload.encode()) > 7900:
                            payload = json.dumps([self._origin, None])
                        await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)
                break
            else:
                raise StoreUnavailable(f"A stream operation on {self.url} read more than it may.")
        except BaseException:
            if not conn.is_closed():
                await transaction.rollback()
            raise
        try:
            await transaction.commit()
        except Exception as exc:
            if write:
                raise OutcomeUnknown(
                    f"The connection to Postgres at {self.url} broke while a stream write committed: it may or may not"
                    f" have been applied ({self.settings.scrub(str(exc))}).",
                    details={"url": self.url},
                ) from None
            raise
        return result, tx.changed


def _paths(payload: str) -> tuple[str, list[str]] | None:
    try:
        origin, paths = json.loads(payload)
    except (ValueError, TypeError):
        return None
    return None if paths is None else (origin, paths)


class _Missing(Exception):
    def __init__(self, what: tuple[Any, ...]) -> None:
        super().__init__(what)
        self.what = what


class _Statements:
    def __init__(self, schema: str) -> None:
        s = schema
        self.by_path = f"SELECT {_COLUMNS} FROM {s}.ds_streams WHERE path = $1"
        self.by_id = f"SELECT {_COLUMNS} FROM {s}.ds_streams WHERE id = $1"
        self.lock_path = "SELECT pg_advisory_xact_lock(hashtextextended('flue-ds:' || $1, 0))"
        self.records = f"SELECT pos, data FROM {s}.ds_records WHERE stream_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos LIMIT $4"
        self.producer = f"SELECT epoch, seq FROM {s}.ds_producers WHERE stream_id = $1 AND producer_id = $2"
        self.candidates = (
            f"SELECT path FROM {s}.ds_streams WHERE NOT deleted AND ((expires_at IS NOT NULL AND expires_at <= $1)"
            " OR (ttl IS NOT NULL AND touched_at + ttl <= $1)) ORDER BY path"
        )
        self.new_id = f"SELECT nextval('{s}.ds_ids')"
        names = _COLUMNS.split(", ")
        self.insert = f"INSERT INTO {s}.ds_streams ({_COLUMNS}) VALUES ({', '.join(f'${n}' for n in range(1, len(names) + 1))})"
        self.save = (
            f"UPDATE {s}.ds_streams SET "
            + ", ".join(f"{name} = ${n}" for n, name in enumerate(names[1:], 2))
            + " WHERE id = $1"
        )
        self.drop = (
            f"DELETE FROM {s}.ds_records WHERE stream_id = $1",
            f"DELETE FROM {s}.ds_producers WHERE stream_id = $1",
            f"DELETE FROM {s}.ds_streams WHERE id = $1",
        )
        self.add_records = (
            f"INSERT INTO {s}.ds_records (stream_id, pos, data) SELECT $1, $2 + n - 1, d FROM unnest($3::bytea[]) WITH ORDINALITY AS t(d, n)"
        )
        self.set_producer = (
            f"INSERT INTO {s}.ds_producers (stream_id, producer_id, epoch, seq) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq"
        )


class _Fetched:
    """What an operation's transaction has read (and locked, when it writes); kept across the runs of
    the rules, which each start from it afresh."""

    def __init__(self) -> None:
        self.paths: dict[str, int | None] = {}  # path -> id of the stream there (None: none)
        self.rows: dict[int, StreamRow] = {}
        self.records: dict[int, dict[int, bytes]] = {}
        self.complete: dict[int, int] = {}  # stream id -> position up to which every record is fetched
        self.producers: dict[tuple[int, str], tuple[int, int] | None] = {}
        self.candidates: list[str] | None = None
        self.ids: list[int] = []

    async def fetch(self, conn: asyncpg.Connection, sql: _Statements, what: tuple[Any, ...], *, lock: bool) -> None:
        kind = what[0]
        if kind == "path":
            path = what[1]
            if lock:
                await conn.execute(sql.lock_path, path)
            row = await conn.fetchrow(sql.by_path + (" FOR UPDATE" if lock else ""), path)
            self.paths[path] = None if row is None else self._keep(row)
        elif kind == "id":
            row = await conn.fetchrow(sql.by_id + (" FOR UPDATE" if lock else ""), what[1])
            if row is None:
                raise StoreUnavailable(f"Stream {what[1]} vanished from under an operation; try again.")
            self._keep(row)
        elif kind == "records":
            stream_id, after, upto = what[1:]
            rows = await conn.fetch(sql.records, stream_id, after, upto, _FETCH)
            kept = self.records.setdefault(stream_id, {})
            for position, data in rows:
                kept[position] = bytes(data)
            if len(rows) < _FETCH:
                self.complete[stream_id] = max(self.complete.get(stream_id, 0), upto)
        elif kind == "producer":
            found = await conn.fetchrow(sql.producer, what[1], what[2])
            self.producers[(what[1], what[2])] = None if found is None else (found[0], found[1])
        elif kind == "candidates":
            self.candidates = [row[0] for row in await conn.fetch(sql.candidates, what[1])]
        elif kind == "id_new":
            self.ids.append(await conn.fetchval(sql.new_id))

    def _keep(self, row: asyncpg.Record) -> int:
        stream = _row(row)
        self.rows[stream.id] = stream
        self.paths[stream.path] = stream.id
        return stream.id


class _Tx:
    """A :class:`StreamTx` over what was fetched, with the rules' writes kept on top, to be made once
    the rules run through."""

    def __init__(self, fetched: _Fetched) -> None:
        self._fetched = fetched
        self._paths: dict[str, int | None] = {}
        self._rows: dict[int, StreamRow | None] = {}
        self._records: dict[int, dict[int, bytes]] = {}
        self._producers: dict[tuple[int, str], tuple[int, int]] = {}
        self._ids_used = 0
        self._writes: list[tuple[Any, ...]] = []
        self.changed: set[str] = set()

    def find(self, path: str) -> StreamRow | None:
        if path in self._paths:
            stream_id = self._paths[path]
        elif path in self._fetched.paths:
            stream_id = self._fetched.paths[path]
        else:
            raise _Missing(("path", path))
        return None if stream_id is None else self.load(stream_id)

    def load(self, stream_id: int) -> StreamRow:
        if stream_id in self._rows:
            row = self._rows[stream_id]
        elif stream_id in self._fetched.rows:
            row = self._fetched.rows[stream_id]
        else:
            raise _Missing(("id", stream_id))
        if row is None:
            raise LookupError(f"stream {stream_id} was removed by this very operation")
        return copy.copy(row)

    def insert(self, row: StreamRow) -> None:
        if self._ids_used >= len(self._fetched.ids):
            raise _Missing(("id_new",))
        row.id = self._fetched.ids[self._ids_used]
        self._ids_used += 1
        self._rows[row.id] = copy.copy(row)
        self._paths[row.path] = row.id
        self._writes.append(("insert", copy.copy(row)))

    def save(self, row: StreamRow) -> None:
        self._rows[row.id] = copy.copy(row)
        self._writes.append(("save", copy.copy(row)))

    def drop(self, stream_id: int) -> None:
        row = self.load(stream_id)
        self._rows[stream_id] = None
        if self._paths.get(row.path, self._fetched.paths.get(row.path)) == stream_id:
            self._paths[row.path] = None
        self._records[stream_id] = {}
        self._writes.append(("drop", stream_id))

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        own = self._records.get(stream_id)
        fetched = self._fetched.records.get(stream_id, {})
        complete = self._fetched.complete.get(stream_id, 0)
        position = after + 1
        while position <= upto:
            if own is not None and position in own:
                yield position, own[position]
            elif position in fetched:
                yield position, fetched[position]
            elif position <= complete or (own is not None and stream_id not in self._fetched.rows):
                return
            else:
                raise _Missing(("records", stream_id, position - 1, upto))
            position += 1

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        own = self._records.setdefault(stream_id, {})
        for n, data in enumerate(records):
            own[first + n] = data
        self._writes.append(("records", stream_id, first, list(records)))

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        key = (stream_id, producer_id)
        if key in self._producers:
            return self._producers[key]
        if key in self._fetched.producers:
            return self._fetched.producers[key]
        if stream_id not in self._fetched.rows:  # a stream made by this operation has no producers yet
            return None
        raise _Missing(("producer", stream_id, producer_id))

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self._producers[(stream_id, producer_id)] = (epoch, seq)
        self._writes.append(("producer", stream_id, producer_id, epoch, seq))

    def expiry_candidates(self, now: float) -> list[str]:
        if self._fetched.candidates is None:
            raise _Missing(("candidates", now))
        return list(self._fetched.candidates)

    async def write(self, conn: asyncpg.Connection, sql: _Statements) -> None:
        for write in self._writes:
            kind = write[0]
            if kind == "insert":
                await conn.execute(sql.insert, *_values(write[1]))
            elif kind == "save":
                await conn.execute(sql.save, *_values(write[1]))
            elif kind == "drop":
                for statement in sql.drop:
                    await conn.execute(statement, write[1])
            elif kind == "records":
                await conn.execute(sql.add_records, write[1], write[2], write[3])
            elif kind == "producer":
                await conn.execute(sql.set_producer, *write[1:])


def _values(row: StreamRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.path,
        row.content_type,
        row.tail,
        row.touched_at,
        row.ttl,
        row.expires_at,
        row.closed,
        None if row.closed_by is None else json.dumps(row.closed_by),
        row.stream_seq,
        row.fork_of,
        row.fork_at,
        row.forks,
        row.deleted,
        json.dumps(row.spec),
    )


def _row(values: asyncpg.Record) -> StreamRow:
    (id_, path, content_type, tail, touched_at, ttl, expires_at, closed, closed_by, stream_seq) = tuple(values)[:10]
    fork_of, fork_at, forks, deleted, spec = tuple(values)[10:]
    return StreamRow(
        id=id_,
        path=path,
        content_type=content_type,
        tail=tail,
        touched_at=touched_at,
        ttl=ttl,
        expires_at=expires_at,
        closed=closed,
        closed_by=None if closed_by is None else tuple(json.loads(closed_by)),
        stream_seq=stream_seq,
        fork_of=fork_of,
        fork_at=fork_at,
        forks=forks,
        deleted=deleted,
        spec=json.loads(spec),
    )

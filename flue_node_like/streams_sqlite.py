"""General Durable Streams in SQLite (tables ``flue_ds_*``), in the same file as the run store if wished.

Its own aiosqlite connection; WAL lets it share the file with the run store and other processes. Each
operation is one transaction run in one hop to the connection's thread. Writes are ``BEGIN IMMEDIATE``,
so producer state, ``Stream-Seq`` and records are committed together (§5.2.1 atomicity) and every commit
is durable. Reads (``write=False``) are deferred transactions: one snapshot of the file, no write lock,
so readers never wait on — or hold up — the run store's writer or another process's.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiosqlite

from flue_core.errors import StoreUnavailable
from flue_core.store import Capabilities, ChangeListener
from flue_core.streams.engine import StreamRow, StreamTx, TransactionalStreamStore
from flue_node_like.sqlite_connection import connect, database_path, in_connection_thread, synchronous_mode

T = TypeVar("T")

_COLUMNS = (
    "id, path, content_type, tail, touched_at, ttl, expires_at, closed, closed_by, stream_seq,"
    " fork_of, fork_at, forks, deleted, spec"
)
#: Rows a read fetches from SQLite at a time; a read stops fetching once its byte budget is spent.
_FETCH = 64


class SqliteStreamStore(TransactionalStreamStore):
    """Streams in a SQLite file, shared by every process on this host that opens it."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True)

    def __init__(
        self,
        url: str | Path = "sqlite:///.flue/flue.db",
        *,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self.path = database_path(url)
        self.synchronous = synchronous_mode(synchronous)
        self._db: aiosqlite.Connection | None = None

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        db = await connect(self.path, self.synchronous)
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def _transact(self, work: Callable[[StreamTx], T], *, write: bool = True) -> tuple[T, set[str]]:
        if self._db is None:
            raise StoreUnavailable(f"The SQLite stream store {self.path} is closed.")
        return await in_connection_thread(self._db, _in_transaction, work, write)


def _in_transaction(conn: sqlite3.Connection, work: Callable[[StreamTx], T], write: bool) -> tuple[T, set[str]]:
    tx = _SqliteTx(conn)
    # A deferred transaction takes its snapshot at its first read and never asks for the write lock.
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
    try:
        result = work(tx)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result, tx.changed


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.changed: set[str] = set()

    def find(self, path: str) -> StreamRow | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM flue_ds_streams WHERE path = ?", (path,)).fetchone()
        return None if row is None else _row(row)

    def load(self, stream_id: int) -> StreamRow:
        return _row(self.conn.execute(f"SELECT {_COLUMNS} FROM flue_ds_streams WHERE id = ?", (stream_id,)).fetchone())

    def insert(self, row: StreamRow) -> None:
        (row.id,) = self.conn.execute(
            f"INSERT INTO flue_ds_streams ({_COLUMNS.removeprefix('id, ')})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            _values(row),
        ).fetchone()

    def save(self, row: StreamRow) -> None:
        assignments = ", ".join(f"{name} = ?" for name in _COLUMNS.removeprefix("id, ").split(", "))
        self.conn.execute(f"UPDATE flue_ds_streams SET {assignments} WHERE id = ?", (*_values(row), row.id))

    def drop(self, stream_id: int) -> None:
        self.conn.execute("DELETE FROM flue_ds_records WHERE stream_id = ?", (stream_id,))
        self.conn.execute("DELETE FROM flue_ds_producers WHERE stream_id = ?", (stream_id,))
        self.conn.execute("DELETE FROM flue_ds_streams WHERE id = ?", (stream_id,))

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        cursor = self.conn.execute(
            "SELECT pos, data FROM flue_ds_records WHERE stream_id = ? AND pos > ? AND pos <= ? ORDER BY pos",
            (stream_id, after, upto),
        )
        try:
            while rows := cursor.fetchmany(_FETCH):
                yield from rows
        finally:
            cursor.close()

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        self.conn.executemany(
            "INSERT INTO flue_ds_records (stream_id, pos, data) VALUES (?, ?, ?)",
            [(stream_id, first + n, data) for n, data in enumerate(records)],
        )

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        return self.conn.execute(
            "SELECT epoch, seq FROM flue_ds_producers WHERE stream_id = ? AND producer_id = ?", (stream_id, producer_id)
        ).fetchone()

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.conn.execute(
            "INSERT INTO flue_ds_producers (stream_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
            (stream_id, producer_id, epoch, seq),
        )

    def expiry_candidates(self, now: float) -> list[str]:
        rows = self.conn.execute(
            "SELECT path FROM flue_ds_streams WHERE deleted = 0 AND"
            " ((expires_at IS NOT NULL AND expires_at <= ?) OR (ttl IS NOT NULL AND touched_at + ttl <= ?))",
            (now, now),
        ).fetchall()
        return [path for (path,) in rows]


def _values(row: StreamRow) -> tuple[Any, ...]:
    return (
        row.path,
        row.content_type,
        row.tail,
        row.touched_at,
        row.ttl,
        row.expires_at,
        int(row.closed),
        None if row.closed_by is None else json.dumps(row.closed_by),
        row.stream_seq,
        row.fork_of,
        row.fork_at,
        row.forks,
        int(row.deleted),
        json.dumps(row.spec),
    )


def _row(values: tuple[Any, ...]) -> StreamRow:
    (id_, path, content_type, tail, touched_at, ttl, expires_at, closed, closed_by, stream_seq) = values[:10]
    fork_of, fork_at, forks, deleted, spec = values[10:]
    return StreamRow(
        id=id_,
        path=path,
        content_type=content_type,
        tail=tail,
        touched_at=touched_at,
        ttl=ttl,
        expires_at=expires_at,
        closed=bool(closed),
        closed_by=None if closed_by is None else tuple(json.loads(closed_by)),
        stream_seq=stream_seq,
        fork_of=fork_of,
        fork_at=fork_at,
        forks=forks,
        deleted=bool(deleted),
        spec=json.loads(spec),
    )

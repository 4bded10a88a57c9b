"""General Durable Streams on Durable Object storage: ``FlueApp(..., streams=True)`` serves the whole
protocol at ``<prefix>/streams/<path>``.

Every stream of the application lives in one ``StreamObject``: streams may fork one another, and a
fork reads its source's records, so they share one storage and every operation is one transaction
there (:class:`ObjectStreamStore`, the rules of :mod:`flue_core.streams.rules` over the object's
SQLite). The Worker forwards each request to the object, which answers it — reads, long-polls and
SSE included — with the same stream server as every other target, woken by its own writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from flue_core.store import Capabilities, ChangeListener
from flue_core.streams.engine import StreamRow, StreamTx, TransactionalStreamStore
from starlette.applications import Starlette
from starlette.routing import Mount

from flue_core.http.app import STREAMS_PREFIX
from flue_core.streams.server import streams_app
from flue_cloudflare import calls
from flue_cloudflare.serving import serve_asgi
from flue_cloudflare.changes import PollingChanges, PollingLock
from flue_cloudflare.objects import FlueObject
from flue_cloudflare.errors import MAX_VALUE_BYTES
from flue_cloudflare.sql import Sql

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    content_type TEXT NOT NULL,
    tail INTEGER NOT NULL,
    touched_at REAL NOT NULL,
    ttl INTEGER,
    expires_at REAL,
    closed INTEGER NOT NULL,
    closed_by TEXT,
    stream_seq TEXT,
    fork_of INTEGER,
    fork_at INTEGER NOT NULL,
    forks INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS streams_path ON streams (path);
CREATE TABLE IF NOT EXISTS records (
    stream_id INTEGER NOT NULL, pos INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, pos)
);
CREATE TABLE IF NOT EXISTS producers (
    stream_id INTEGER NOT NULL, producer_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
);
"""
_FIELDS = ("path", "content_type", "tail", "touched_at", "ttl", "expires_at", "closed", "closed_by", "stream_seq",
           "fork_of", "fork_at", "forks", "deleted", "spec")  # fmt: skip
#: The largest append: a record is one row, which holds at most MAX_VALUE_BYTES with its keys.
MAX_APPEND_BYTES = MAX_VALUE_BYTES - 1024
#: Records a read fetches at a time; a read stops fetching once its byte budget is spent.
_FETCH = 64


class ObjectStreamStore(TransactionalStreamStore):
    """The streams kept in one Durable Object's storage, used inside that object."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=False)

    def __init__(self, sql: Sql, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.sql = sql
        sql.script(SCHEMA)

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change

    async def close(self) -> None:
        return None

    async def _transact(self, work: Callable[[StreamTx], T], *, write: bool = True) -> tuple[T, set[str]]:
        tx = _ObjectTx(self.sql)
        return self.sql.transaction(lambda: work(tx)), tx.changed


class _ObjectTx:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self.changed: set[str] = set()

    def find(self, path: str) -> StreamRow | None:
        row = self.sql.one("SELECT * FROM streams WHERE path = ? ORDER BY id DESC LIMIT 1", path)
        return None if row is None else _row(row)

    def load(self, stream_id: int) -> StreamRow:
        row = self.sql.one("SELECT * FROM streams WHERE id = ?", stream_id)
        assert row is not None
        return _row(row)

    def insert(self, row: StreamRow) -> None:
        columns = ", ".join(_FIELDS)
        found = self.sql.one(
            f"INSERT INTO streams ({columns}) VALUES ({', '.join('?' for _ in _FIELDS)}) RETURNING id", *_values(row)
        )
        assert found is not None
        row.id = found["id"]

    def save(self, row: StreamRow) -> None:
        assignments = ", ".join(f"{name} = ?" for name in _FIELDS)
        self.sql.run(f"UPDATE streams SET {assignments} WHERE id = ?", *_values(row), row.id)

    def drop(self, stream_id: int) -> None:
        self.sql.run("DELETE FROM records WHERE stream_id = ?", stream_id)
        self.sql.run("DELETE FROM producers WHERE stream_id = ?", stream_id)
        self.sql.run("DELETE FROM streams WHERE id = ?", stream_id)

    def records(self, stream_id: int, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        while after < upto:
            rows = self.sql.rows(
                "SELECT pos, data FROM records WHERE stream_id = ? AND pos > ? AND pos <= ? ORDER BY pos LIMIT ?",
                stream_id, after, upto, _FETCH,
            )  # fmt: skip
            for row in rows:
                yield row["pos"], row["data"]
            if len(rows) < _FETCH:
                return
            after = rows[-1]["pos"]

    def add_records(self, stream_id: int, first: int, records: list[bytes]) -> None:
        for n, data in enumerate(records):
            self.sql.run("INSERT INTO records (stream_id, pos, data) VALUES (?, ?, ?)", stream_id, first + n, data)

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        row = self.sql.one(
            "SELECT epoch, seq FROM producers WHERE stream_id = ? AND producer_id = ?", stream_id, producer_id
        )
        return None if row is None else (row["epoch"], row["seq"])

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.sql.run(
            "INSERT INTO producers (stream_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
            stream_id, producer_id, epoch, seq,
        )  # fmt: skip

    def expiry_candidates(self, now: float) -> list[str]:
        rows = self.sql.rows(
            "SELECT path FROM streams WHERE deleted = 0 AND"
            " ((expires_at IS NOT NULL AND expires_at <= ?) OR (ttl IS NOT NULL AND touched_at + ttl <= ?))",
            now, now,
        )  # fmt: skip
        return [row["path"] for row in rows]


def _values(row: StreamRow) -> list[Any]:
    return [
        row.path, row.content_type, row.tail, row.touched_at, row.ttl, row.expires_at, int(row.closed),
        None if row.closed_by is None else json.dumps(row.closed_by), row.stream_seq, row.fork_of, row.fork_at,
        row.forks, int(row.deleted), json.dumps(row.spec),
    ]  # fmt: skip


def _row(row: dict[str, Any]) -> StreamRow:
    return StreamRow(
        id=row["id"],
        path=row["path"],
        content_type=row["content_type"],
        tail=row["tail"],
        touched_at=row["touched_at"],
        ttl=row["ttl"],
        expires_at=row["expires_at"],
        closed=bool(row["closed"]),
        closed_by=None if row["closed_by"] is None else tuple(json.loads(row["closed_by"])),
        stream_seq=row["stream_seq"],
        fork_of=row["fork_of"],
        fork_at=row["fork_at"],
        forks=row["forks"],
        deleted=bool(row["deleted"]),
        spec=json.loads(row["spec"]),
    )


class StreamObject(FlueObject):
    """The Durable Object holding every general stream of the application."""

    binding: ClassVar[str] = calls.STREAMS

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._app: Any = None
        self._opening = PollingLock()

    async def fetch(self, request: Any) -> Any:
        with calls.serving(self):
            async with self._opening:
                if self._app is None:
                    self._app = await self._open()
            return await serve_asgi(self._app, request, self.env)

    async def _open(self) -> Starlette:
        options = self.app.http_options.get("stream_options")
        # An append is one record, one row: larger bodies get 413 before anything is stored.
        streams = streams_app(
            ObjectStreamStore(self.sql), open_store=False, read_options=options, max_append_bytes=MAX_APPEND_BYTES
        )
        server = streams.state.streams
        server.changes = PollingChanges()  # readers are served by other events than writers
        await server.__aenter__()  # open for the object's life
        return Starlette(routes=[Mount(self.app.prefix + STREAMS_PREFIX, app=streams)])

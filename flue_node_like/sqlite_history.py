"""Run histories read from a SQLite store file opened read-only, a page of runs per query.

The file is opened with ``mode=ro`` and ``query_only``: nothing is created, upgraded or written, and
a file of another schema version is refused (:class:`~flue_core.errors.UnsupportedHistory`) rather
than upgraded as opening it as a store would.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import anyio.to_thread

from flue_core.errors import ConfigurationError, UnsupportedHistory
from flue_core.models import UNFINISHED, RunRecord
from flue_core.replay.history import HistoryReader, PendingSignal, RunHistory, Selection, child_ids
from flue_node_like.sqlite_connection import database_path
from flue_node_like.sqlite_rows import COLUMNS, record
from flue_node_like.sqlite_schema import SCHEMA_VERSION

#: Runs per query (an ``IN`` list stays under SQLite's oldest limit of 999 parameters).
PAGE = 500
_UNFINISHED = tuple(status.value for status in UNFINISHED)


class SqliteHistories(HistoryReader):
    """The histories in the SQLite file of ``url`` (``sqlite:///path.db``)."""

    def __init__(self, url: str) -> None:
        self.path = database_path(url)
        self.source = url
        self._conn: sqlite3.Connection | None = None

    async def histories(self, selection: Selection) -> AsyncIterator[RunHistory]:
        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(self._open)
        if selection.run_ids is not None:
            ids = list(dict.fromkeys(selection.run_ids))
            for start in range(0, len(ids), PAGE):
                chunk = ids[start : start + PAGE]
                for history in await anyio.to_thread.run_sync(self._page, f"run_id IN ({_marks(chunk)})", chunk):
                    if selection.keeps(history.record):
                        yield history
            return
        where, params = "run_id > ?", []
        if selection.unfinished:
            where, params = f"{where} AND status IN ({_marks(_UNFINISHED)})", [*_UNFINISHED]
        if selection.workflows is not None:
            names = sorted(selection.workflows)
            where, params = f"{where} AND workflow IN ({_marks(names)})", [*params, *names]
        after = ""
        while True:
            page = await anyio.to_thread.run_sync(self._page, where, [after, *params])
            for history in page:
                yield history
            if len(page) < PAGE:
                return
            after = page[-1].record.run_id

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise ConfigurationError(f"No SQLite store at {self.path} (from {self.source}).", details={"store": self.source})
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            row = conn.execute("SELECT value FROM flue_meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UnsupportedHistory(
                f"{self.path} is not a Flue store this version can read ({exc}).", details={"store": self.source}
            ) from None
        stored = None if row is None else row[0]
        if stored != str(SCHEMA_VERSION):
            conn.close()
            older = stored is not None and stored.isdigit() and int(stored) < SCHEMA_VERSION
            advice = (
                " Open it once with this version of Flue (any flue command on it upgrades it in place; a"
                " replay check never writes, so it does not), or export its runs with the version that wrote them."
                if older
                else " Check it with the version of Flue that wrote it."
            )
            raise UnsupportedHistory(
                f"{self.path} was written in SQLite schema {stored!r}; this version of Flue reads schema"
                f" {SCHEMA_VERSION}.{advice}",
                details={"store": self.source, "stored_version": stored, "supported_version": SCHEMA_VERSION},
            )
        return conn

    def _page(self, where: str, params: Sequence[str]) -> list[RunHistory]:
        conn = self._conn
        assert conn is not None
        rows = conn.execute(f"SELECT {COLUMNS} FROM flue_runs WHERE {where} ORDER BY run_id LIMIT {PAGE}", params)
        records = [record(row) for row in rows.fetchall()]
        if not records:
            return []
        ids = [r.run_id for r in records]
        calls: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for run_id, name, value in conn.execute(
            f"SELECT run_id, name, value FROM flue_steps WHERE run_id IN ({_marks(ids)}) ORDER BY run_id, seq, name", ids
        ):
            calls[run_id].append((name, value))
        waiting = [r.run_id for r in records if r.status in UNFINISHED]
        mailbox: dict[str, list[PendingSignal]] = defaultdict(list)
        if waiting:
            for run_id, signal_id, name, data in conn.execute(
                "SELECT run_id, signal_id, name, data FROM flue_signals WHERE delivered = 0"
                f" AND run_id IN ({_marks(waiting)}) ORDER BY run_id, seq",
                waiting,
            ):
                mailbox[run_id].append(PendingSignal(signal_id, name, json.loads(data)))
        children = self._records([child for run_id in ids for child in child_ids(calls[run_id])])
        return [
            RunHistory(
                r,
                tuple(calls[r.run_id]),
                tuple(mailbox[r.run_id]),
                {child: children[child] for child in child_ids(calls[r.run_id]) if child in children},
            )
            for r in records
        ]

    def _records(self, run_ids: list[str]) -> dict[str, RunRecord]:
        found: dict[str, RunRecord] = {}
        assert self._conn is not None
        for start in range(0, len(run_ids), PAGE):
            chunk = run_ids[start : start + PAGE]
            for row in self._conn.execute(f"SELECT {COLUMNS} FROM flue_runs WHERE run_id IN ({_marks(chunk)})", chunk):
                found[row[0]] = record(row)
        return found


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))

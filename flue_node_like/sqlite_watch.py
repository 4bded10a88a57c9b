"""Hearing of other processes' writes to a shared SQLite file, without a server to tell us.

SQLite raises a connection's ``PRAGMA data_version`` whenever *another* connection commits to the
file. Reading it is a lookup in shared memory (no disk access), so a store checks it a few times per
second and, on a change, tells its listener that any run may have changed (every waiting reader looks
again), runs may have become ready, schedules changed or runs were asked to cancel.
"""

from __future__ import annotations

import asyncio
import sqlite3
import logging

import aiosqlite

from flue_core.store import ANY_RUN, CANCELS, READY, SCHEDULES, ChangeListener
from flue_node_like.sqlite_connection import in_connection_thread

log = logging.getLogger("flue")

#: Seconds between two looks at ``data_version``: how late a worker hears of another process's run.
INTERVAL = 0.05


class DataVersionWatch:
    def __init__(self, db: aiosqlite.Connection, on_change: ChangeListener, interval: float = INTERVAL) -> None:
        self._db = db
        self._on_change = on_change
        self._interval = interval
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="flue-sqlite-data-version")

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _watch(self) -> None:
        seen = None
        while True:
            try:
                version = await in_connection_thread(self._db, _data_version)
            except Exception:  # the connection is closing, or busy: look again next time
                log.debug("flue: reading SQLite data_version failed", exc_info=True)
                version = seen
            if seen is not None and version != seen:
                self._on_change((ANY_RUN, READY, SCHEDULES, CANCELS))
            seen = version
            await asyncio.sleep(self._interval)


def _data_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA data_version").fetchone()[0]

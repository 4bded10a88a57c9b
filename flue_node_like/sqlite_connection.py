"""Opening the local target's SQLite file: one place for its location, pragmas and schema check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from flue_core.errors import ConfigurationError
from flue_node_like.sqlite_schema import ensure_schema

T = TypeVar("T")
SYNCHRONOUS = ("FULL", "EXTRA", "NORMAL")


def database_path(location: str | Path) -> Path:
    """``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db``, or a plain path."""
    if isinstance(location, Path):
        return location
    if not location.startswith("sqlite:"):
        return Path(location)
    if not location.startswith("sqlite:///") or len(location) <= len("sqlite:///"):
        raise ConfigurationError(f"SQLite store URLs look like sqlite:///path/to/file.db, not {location!r}.")
    return Path(location[len("sqlite:///") :])


def synchronous_mode(value: str) -> str:
    """``FULL`` (the default: every commit reaches the disk), ``EXTRA`` or ``NORMAL``."""
    mode = value.upper()
    if mode not in SYNCHRONOUS:
        raise ConfigurationError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {value!r}.")
    return mode


async def connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    """A connection in WAL mode with the schema created or checked (``UnsupportedSchemaVersion``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connecting = aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    # A daemon thread: a store left unclosed (its process interrupted again while shutting down)
    # must not keep the interpreter alive. SQLite's journal makes an exit mid-transaction safe.
    connecting._thread.daemon = True
    db = await connecting
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={synchronous}")
        await db.execute("PRAGMA busy_timeout=10000")
        await in_connection_thread(db, ensure_schema)
    except BaseException:
        await db.close()
        raise
    return db


def in_connection_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> Any:
    """Await ``fn(sqlite3_connection, *args)`` on aiosqlite's connection thread.

    aiosqlite's own dispatch (``_execute``, which every one of its methods uses) lets one hop run a
    whole transaction of ours instead of one hop per statement; the stores' batching rests on it.
    """
    return db._execute(fn, db._conn, *args)

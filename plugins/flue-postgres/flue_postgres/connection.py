"""Connections to Postgres and what their failures mean to Flue.

Every driver error leaves this package as one of Flue's: a server that cannot be reached, restarts,
shuts down or runs out of connections is :class:`~flue_core.errors.StoreUnavailable` (runs wait it
out); refused credentials, a database that does not exist, a missing privilege or a malformed option
is :class:`~flue_core.errors.ConfigurationError`. Messages show the URL with its password masked.

:class:`Readers` is a small pool of connections for reads, each retried on a fresh connection
while the server is away, for up to the URL's ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from flue_core.errors import ConfigurationError, FlueError, StoreUnavailable
from flue_postgres.settings import PostgresSettings

log = logging.getLogger("flue.postgres")

__all__ = ["OutcomeUnknown", "Readers", "close_quietly", "connect", "is_transient", "translate"]

T = TypeVar("T")

#: The longest pause between two attempts to reach a server that is away.
MAX_BACKOFF = 1.0
#: SQLSTATE classes of a server that cannot serve now: connection exceptions, insufficient
#: resources, operator intervention (a shutdown, a restart, "starting up").
_AWAY = ("08", "53", "57")
#: A transaction rolled back by the server's concurrency control: run it again.
_ROLLED_BACK = ("40001", "40P01")


async def connect(settings: PostgresSettings, *, purpose: str, read_only: bool = False) -> asyncpg.Connection:
    """A connection with the session settings every part of the store relies on (UTC, a name, plans).

    A caller cancelled meanwhile (a runtime closing) does not cancel the connection attempt, which
    asyncpg does not survive cleanly mid-handshake: the attempt ends on its own and its connection,
    if any, is closed."""
    attempt = asyncio.ensure_future(
        asyncpg.connect(
            settings.dsn,
            timeout=settings.connect_timeout,
            # Generic plans: the store's statements find rows by key, and would otherwise be planned
            # anew on every call inside its functions (a custom plan costs ~0.3 ms, executing ~0.05 ms).
            server_settings={
                "application_name": f"flue-{purpose}",
                "timezone": "UTC",
                "plan_cache_mode": "force_generic_plan",
                # A reader that must write nothing (a replay check) is refused any write by the server too.
                **({"default_transaction_read_only": "on"} if read_only else {}),
            },
        )
    )
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        attempt.add_done_callback(_discard)
        raise
    except Exception as exc:
        raise translate(exc, settings, "Cannot connect to") from None


async def close_quietly(conn: asyncpg.Connection | None) -> None:
    """Close ``conn`` within 2 s, or drop it: a server that is away must not hold up a shutdown."""
    if conn is None:
        return
    try:
        await asyncio.wait_for(conn.close(), 2)
    except BaseException:
        conn.terminate()


def _discard(attempt: asyncio.Future[asyncpg.Connection]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().terminate()


class OutcomeUnknown(StoreUnavailable):
    """A write's connection broke while it committed: it may or may not have been applied, so it is
    not made again."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means "not now": the server is away or rolled the transaction back, so the
    same work may succeed on a fresh connection."""
    if isinstance(exc, StoreUnavailable):
        return not isinstance(exc, OutcomeUnknown)
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state.startswith(_AWAY) or state in _ROLLED_BACK
    return isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError | ConnectionError)


def translate(exc: BaseException, settings: PostgresSettings, what: str = "Postgres at") -> FlueError:
    """Flue's error for a driver's: see the module docstring."""
    if isinstance(exc, FlueError):
        return exc
    shown = settings.url
    message = settings.scrub(str(exc) or type(exc).__name__)
    details = {"url": shown}
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        details["sqlstate"] = state
        if state.startswith("28"):
            return ConfigurationError(f"Postgres at {shown} refused the credentials: {message}", details=details)
        if state.startswith("3D"):
            return ConfigurationError(f"Postgres at {shown} has no such database: {message}", details=details)
        if state == "42501":
            return ConfigurationError(
                f"The Postgres user of {shown} lacks a privilege Flue needs ({message}): Flue creates its schema,"
                " tables and functions on first use, then reads and writes them; grant CREATE on the database"
                " (or create the schema for it) and USAGE on the schema.",
                details=details,
            )
        if state in ("3F000", "42P01", "42883"):
            return ConfigurationError(
                f"Flue's tables in Postgres at {shown} are gone or damaged ({message}); the schema was dropped or"
                " altered while the store was open.",
                details=details,
            )
        return StoreUnavailable(f"{what} {shown} failed: {message}", details=details)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConfigurationError(f"The TLS certificate of Postgres at {shown} was refused: {message}", details=details)
    if isinstance(exc, asyncpg.ClientConfigurationError) or (what == "Cannot connect to" and isinstance(exc, ValueError | TypeError)):
        return ConfigurationError(f"{shown} is not a usable Postgres URL: {message}", details=details)
    if isinstance(exc, asyncio.TimeoutError):
        return StoreUnavailable(f"{what} {shown}: no answer in time", details=details)
    return StoreUnavailable(f"{what} {shown}: {message}", details=details)


def _breaks_connection(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` is of no further use."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "").startswith(("08", "57"))
    return isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError | StoreUnavailable)


class Readers:
    """Up to ``settings.pool`` connections for reads. :meth:`run` gives one to ``work`` and, when the
    server is away, tries again on a fresh connection until ``settings.timeout`` has passed."""

    def __init__(self, settings: PostgresSettings, purpose: str, *, read_only: bool = False) -> None:
        self.settings = settings
        self.purpose = purpose
        self.read_only = read_only
        self._idle: list[asyncpg.Connection] = []
        self._room = asyncio.Semaphore(settings.pool)
        self._closed = False

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.settings.timeout
        backoff = 0.05
        while True:
            if self._closed:
                raise StoreUnavailable(f"The Postgres store {self.settings.url} is closed.")
            async with self._room:
                conn = None
                try:
                    conn = self._idle.pop() if self._idle else await connect(
                        self.settings, purpose=self.purpose, read_only=self.read_only
                    )
                    async with asyncio.timeout(self.settings.timeout):
                        result = await work(conn)
                except Exception as exc:
                    broken = _breaks_connection(exc)
                    if conn is not None:
                        self._put_back(conn, broken)
                    if not (broken or isinstance(exc, asyncpg.PostgresError)):
                        raise  # not the driver's: a refusal of the work's own, say
                    if not is_transient(exc) or time.monotonic() + backoff > deadline:
                        raise translate(exc, self.settings) from None
                    failure = exc
                except BaseException:
                    if conn is not None:
                        conn.terminate()
                    raise
                else:
                    self._put_back(conn, False)
                    return result
            log.debug("flue: a read from Postgres failed (%s); trying again", failure)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _put_back(self, conn: asyncpg.Connection, broken: bool) -> None:
        if broken or self._closed or conn.is_closed():
            conn.terminate()
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_quietly(conn)


def fetch(sql: str, *args: Any) -> Callable[[asyncpg.Connection], Awaitable[list[asyncpg.Record]]]:
    return lambda conn: conn.fetch(sql, *args)


def fetchval(sql: str, *args: Any) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    return lambda conn: conn.fetchval(sql, *args)

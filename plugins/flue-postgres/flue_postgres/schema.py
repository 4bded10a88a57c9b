"""Flue's schema in Postgres: created on first use, checked on every open.

The schema (``?schema=``, default ``flue``) holds the run store's and the stream store's tables and
functions (``sql/*.sql``) and a ``meta`` table with the version they were written in. Opening a
store creates them in an empty or missing schema, under an advisory lock so that processes opening
a fresh database at once create them once; one written by a newer version raises
:class:`~flue_core.errors.UnsupportedSchemaVersion`, one that holds tables that are not Flue's raises
:class:`~flue_core.errors.ConfigurationError`.

A schema of an older version is upgraded in place: its tables gain what later versions added (columns
with defaults, indexes), and this version's functions are created beside the older version's. The
functions of schema version ``N`` are named ``vN_<name>`` (version 1's have no prefix), so processes
of the previous release that still run during a rolling deploy keep calling their own functions, with
the argument and record shapes they know, on the upgraded tables (they do not apply flow control,
which they know nothing of); processes of the previous release that start after the upgrade are
refused (a newer schema version). An upgrade drops the functions of versions older than the one it
upgrades from: no process that could call them is still running.
"""

from __future__ import annotations

import re
from importlib.resources import files

import asyncpg

from flue_core.errors import ConfigurationError, UnsupportedSchemaVersion
from flue_postgres.settings import PostgresSettings

__all__ = ["FUNCTION_PREFIX", "RECORD_COLUMNS", "SCHEMA_VERSION", "check_schema", "ensure_schema", "sql"]

SCHEMA_VERSION = "2"
#: The prefix of this version's function names (``@F@`` in ``sql/*.sql``, after the schema).
FUNCTION_PREFIX = f"v{SCHEMA_VERSION}_"
#: The columns of a record, in the order of :func:`flue_postgres.rows.record_of`.
RECORD_COLUMNS = (
    "run_id", "workflow", "status", "input", "key", "attempt", "created_at", "started_at", "ended_at", "result",
    "error", "cancel_requested", "parent_run_id", "wake_at", "waiting_for", "carrier", "recoveries", "rerun_of",
    "priority", "concurrency_key", "rate_key", "debounce_key",
)  # fmt: skip
_REC = re.compile(r"@REC\((\w+)\)@")
_FINISHED = re.compile(r"@FINISHED\(([\w.]+)\)@")
#: The tables of each version: a new schema runs them all, one of version ``v`` those after ``v``.
_TABLES = ("schema.sql", "schema_2.sql")
#: The functions (all of them are in these files, named with :data:`FUNCTION_PREFIX`).
_FUNCTIONS = ("runs.sql", "flow.sql")
_PREFIXED = re.compile(r"v(\d+)_")
#: The one pending debounce run per key, as ``schema_2.sql`` defines it.
_DEBOUNCE_INDEX = re.compile(r"CREATE UNIQUE INDEX runs_debounce .*?;", re.DOTALL)


def sql(name: str, settings: PostgresSettings) -> str:
    """The text of ``sql/<name>`` for the URL's schema: ``@S@`` is the quoted schema name, ``@F@`` that
    and a dot and :data:`FUNCTION_PREFIX` (before a function's name), ``@N@`` the bare schema name
    (inside string literals), ``@C@`` the change channel as a string literal."""
    text = files("flue_postgres").joinpath("sql", name).read_text(encoding="utf-8")
    text = _REC.sub(lambda m: "json_build_array(" + ", ".join(f"{m.group(1)}.{c}" for c in RECORD_COLUMNS) + ")", text)
    text = _FINISHED.sub(lambda m: f"({m.group(1)} IN ('completed', 'failed', 'cancelled'))", text)
    return (
        text.replace("@F@", f'"{settings.schema}".{FUNCTION_PREFIX}')
        .replace("@S@", f'"{settings.schema}"')
        .replace("@N@", settings.schema)
        .replace("@C@", f"'{settings.channel}'")
        .replace("@D@", f"'{settings.channel}:ds'")
    )


async def ensure_schema(conn: asyncpg.Connection, settings: PostgresSettings) -> None:
    """Create the schema's tables and functions if it has none, else check their version."""
    schema = settings.schema
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"flue-schema:{schema}")
        version = await _stored_version(conn, schema)
        if version is None:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema
            )
            if tables:
                raise ConfigurationError(
                    f"The Postgres schema {schema!r} of {settings.url} holds tables that are not Flue's;"
                    " give Flue a schema of its own (?schema=).",
                    details={"url": settings.url, "schema": schema},
                )
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            for name in (*_TABLES, "streams.sql", *_FUNCTIONS):
                await conn.execute(sql(name, settings))
            await conn.execute(
                f'INSERT INTO "{schema}".meta (key, value) VALUES ($1, $2)', "schema_version", SCHEMA_VERSION
            )
        elif version == SCHEMA_VERSION:
            await _complete(conn, settings)
        elif version.isdigit() and 0 < int(version) < int(SCHEMA_VERSION):
            await _upgrade(conn, settings, int(version))
        elif version != SCHEMA_VERSION:
            newer = version.isdigit() and int(version) > int(SCHEMA_VERSION)
            raise UnsupportedSchemaVersion(
                f"The Postgres schema {schema!r} of {settings.url} was written by {'a newer' if newer else 'an unrecognised'}"
                f" version of flue-postgres (schema version {version!r}; this version reads {SCHEMA_VERSION}).",
                details={"url": settings.url, "stored_version": version, "supported_version": SCHEMA_VERSION},
            )


async def _upgrade(conn: asyncpg.Connection, settings: PostgresSettings, version: int) -> None:
    """Bring a schema of an older ``version`` to this one, in the caller's transaction: the tables
    gain what later versions added, this version's functions are created beside ``version``'s (which
    processes of that release may still call), and those of versions before ``version`` are dropped."""
    schema = settings.schema
    functions = await conn.fetch(
        "SELECT p.proname, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1",
        schema,
    )
    for name, function in functions:
        prefixed = _PREFIXED.match(name)
        if (int(prefixed.group(1)) if prefixed else 1) < version:
            await conn.execute(f"DROP FUNCTION {function}")
    for name in (*_TABLES[version:], *_FUNCTIONS):
        await conn.execute(sql(name, settings))
    await conn.execute(f'UPDATE "{schema}".meta SET value = $1 WHERE key = $2', SCHEMA_VERSION, "schema_version")


async def _complete(conn: asyncpg.Connection, settings: PostgresSettings) -> None:
    """Bring a schema of this version written by development code of this version before its release
    up to date: its functions had no prefix (they are created under their names; the old ones stay,
    unused), and its pending-debounce index counted runs asked to cancel (it is built again). Two
    catalog lookups when nothing is missing."""
    schema = settings.schema
    functions, index = await conn.fetchrow(
        "SELECT to_regprocedure($1), pg_get_indexdef(to_regclass($2))",
        f'"{schema}".{FUNCTION_PREFIX}apply(text, text[], text, boolean, boolean)',
        f'"{schema}".runs_debounce',
    )
    if functions is None:
        for name in _FUNCTIONS:
            await conn.execute(sql(name, settings))
    if index is None or "cancel_requested" not in index:
        definition = _DEBOUNCE_INDEX.search(sql("schema_2.sql", settings))
        assert definition is not None
        await conn.execute(f'DROP INDEX IF EXISTS "{schema}".runs_debounce')
        await conn.execute(definition.group(0))


async def check_schema(conn: asyncpg.Connection, settings: PostgresSettings) -> None:
    """Check, writing nothing, that the schema holds Flue's tables of this version (for a reader that
    must not create them: ``ConfigurationError`` when there are none)."""
    version = await _stored_version(conn, settings.schema)
    if version is None:
        raise ConfigurationError(
            f"No Flue runs were ever stored in schema {settings.schema!r} of {settings.url}.",
            details={"url": settings.url, "schema": settings.schema},
        )
    if version != SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"The Postgres schema {settings.schema!r} of {settings.url} was written in schema version {version!r};"
            f" this version of flue-postgres reads {SCHEMA_VERSION}. Check it with the version that wrote it"
            " (or, if that is older, open it once as a store with this version, which upgrades it in place).",
            details={"url": settings.url, "stored_version": version, "supported_version": SCHEMA_VERSION},
        )


async def _stored_version(conn: asyncpg.Connection, schema: str) -> str | None:
    if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".meta') is None:
        return None
    version = await conn.fetchval(f'SELECT value FROM "{schema}".meta WHERE key = $1', "schema_version")
    return "" if version is None else version

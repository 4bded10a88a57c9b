"""pytest fixtures that run a real Postgres (:class:`~flue_postgres.server.PostgresServer`).

Tests never touch a Postgres they did not start. As a pytest plugin
(``pytest_plugins = ["flue_postgres.testing"]``) this module provides:

* ``postgres_server`` — one server for the whole session, started on first use; tests must not stop it;
* ``postgres_url`` — a ``postgres://`` URL on that server with a schema of its own (``?schema=``), so
  tests sharing the server never see each other's runs;
* ``own_postgres_server`` — a server for one test, which it may stop, crash and restart.

A missing Postgres fails these fixtures with instructions; it never skips a test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from flue_postgres.server import PostgresServer, PostgresServerMissing

__all__ = ["own_postgres_server", "postgres_server", "postgres_url"]

DATABASE = "flue_tests"
_schemas = itertools.count(1)


def make_server() -> PostgresServer:
    """A started server, or the test fails saying how to install Postgres."""
    try:
        server = PostgresServer()
    except PostgresServerMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's shared server, with a database ``flue_tests``. Do not stop it: use
    ``own_postgres_server`` to stop, crash or restart one."""
    server = make_server()
    try:
        server.create_database(DATABASE)
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL on the shared server with a schema no other test uses."""
    assert postgres_server.running, "a test stopped the shared Postgres server; use own_postgres_server to do that"
    return postgres_server.url(DATABASE, schema=f"t{os.getpid()}_{next(_schemas)}")


@pytest.fixture
def own_postgres_server() -> Iterator[PostgresServer]:
    """A started server of this test's own (``fsync`` on), removed when the test ends."""
    server = make_server()
    try:
        yield server
    finally:
        server.remove()

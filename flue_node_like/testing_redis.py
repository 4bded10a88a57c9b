"""pytest fixtures that run a real ``redis-server`` (:class:`~flue_node_like.redis_server.RedisServer`).

Tests never touch a Redis they did not start. As a pytest plugin
(``pytest_plugins = ["flue_node_like.testing_redis"]``) this module provides:

* ``redis_server`` — one server for the whole session, started on first use; tests must not stop it;
* ``redis_url`` — a ``redis://`` URL on that server with a key prefix of its own, so tests sharing the
  server never see each other's keys (no flushing needed);
* ``own_redis_server`` — a server for one test (``appendfsync always``), which it may stop, kill and
  restart.

A missing ``redis-server`` fails these fixtures with instructions; it never skips a test.
``FLUE_TEST_APPENDFSYNC`` sets the shared server's ``appendfsync`` (default ``everysec``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flue_node_like.redis_server import RedisServer, RedisServerMissing

__all__ = ["own_redis_server", "redis_server", "redis_url"]

_prefixes = itertools.count(1)


def _server(directory: Path, **options: object) -> RedisServer:
    try:
        return RedisServer(directory, **options)  # type: ignore[arg-type]
    except RedisServerMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's shared server. Do not stop it: use ``own_redis_server`` to stop, kill or restart."""
    server = _server(tmp_path_factory.mktemp("redis"), appendfsync=os.environ.get("FLUE_TEST_APPENDFSYNC", "everysec"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A URL on the shared server with a key prefix no other test uses."""
    assert redis_server.running, "a test stopped the shared Redis server; use own_redis_server to do that"
    return redis_server.url(prefix=f"test{os.getpid()}-{next(_prefixes)}")


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started server of this test's own (``appendfsync always``, so a kill -9 loses nothing
    acknowledged), stopped when the test ends."""
    server = _server(tmp_path / "redis", appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.kill()

"""Fixtures every test module may use: anyio on asyncio (``anyio_backend``), ``make_target`` over
each store (memory, SQLite and Redis, for the HTTP tests), and a real redis-server (``redis_server``,
``redis_url``, ``own_redis_server``; see :mod:`flue_node_like.testing_redis`)."""

import pytest

from http_served import STORES, local_target

pytest_plugins = ["flue_node_like.testing_redis"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORES)
def make_target(request, tmp_path):
    """A factory of local targets over one store of the test's own (memory, SQLite or Redis)."""
    return lambda: local_target(request.param, tmp_path, request)

"""Serving a runtime's HTTP app over a real socket for the HTTP tests: uvicorn on 127.0.0.1, httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flue_core import Runtime, Workflow
from flue_core.http import create_app, serve
from flue_node_like import LocalTarget, MemoryStore, RedisStore, SqliteStore

#: Every HTTP test runs on each store (Redis: the session's redis-server, a key prefix per test).
STORES = ["memory", "sqlite", "redis"]


def local_target(store: str, tmp_path: Path, request: pytest.FixtureRequest | None = None) -> LocalTarget:
    """A local target over a new store of kind ``store``; ``"redis"`` needs the test's ``request``
    (for its ``redis_url``), and every target made in one test shares that test's data."""
    if store == "redis":
        assert request is not None, "a Redis store needs the test's request"
        backend: Any = RedisStore(request.getfixturevalue("redis_url"))
    else:
        backend = MemoryStore() if store == "memory" else SqliteStore(tmp_path / "flue.db")
    return LocalTarget(backend, shutdown_grace=0.2, sweep_interval=0.1)


@asynccontextmanager
async def served(
    workflows: Iterable[Workflow], make_target: Callable[[], LocalTarget], *, plugins: Iterable[object] = (), **options: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """``(runtime, client)``: the runtime opened by the test (the host owns its lifetime), its app made
    with ``create_app(runtime, **options)``, and a client whose base URL is the server."""
    runtime = Runtime(list(workflows), target=make_target(), plugins=plugins)
    async with runtime, serve(create_app(runtime, **options)) as url, httpx.AsyncClient(base_url=url) as client:
        yield runtime, client


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` of an envelope, checking it is one."""
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]

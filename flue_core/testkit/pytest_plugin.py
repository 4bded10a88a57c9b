"""Flue's pytest plugin (entry point ``pytest11: flue``): the ``flue_env`` fixture, a
:class:`~flue_core.testkit.TestEnvironment` per test, and the ``flue`` marker that configures it.

    @pytest.fixture
    def flue_workflows():              # in conftest.py: what flue_env serves
        return [expense_approval]       # or "myapp.workflows"

    @pytest.mark.flue(start=datetime(2026, 1, 5, 9, tzinfo=UTC))   # TestEnvironment's options
    async def test_expires(flue_env):
        run = await flue_env.start("expense-approval", {"amount": 120})
        assert await flue_env.result(run) == {"status": "expired"}

``flue_env`` is an async fixture run by anyio's pytest plugin (on its ``anyio_backend``), so tests
that use it are ``async def`` and need no marker of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "flue(**options): options of the test's flue_env, as TestEnvironment takes them"
        " (workflows=, store=, start=, auto_skip=, plugins=, settle_timeout=, concurrency=)",
    )


@pytest.fixture
def flue_workflows() -> Any:
    """The workflows ``flue_env`` serves: override it (a list of workflows, a module or a dotted
    package name). The default, ``None``, takes those installed distributions publish in the
    ``flue.workflows`` entry-point group."""
    return None


@pytest.fixture
async def flue_env(request: pytest.FixtureRequest, flue_workflows: Any, anyio_backend: Any) -> AsyncIterator[Any]:
    """A :class:`~flue_core.testkit.TestEnvironment` of ``flue_workflows`` for one test, closed after
    it (which checks that every step double was used)."""
    from flue_core.testkit import TestEnvironment

    marker = request.node.get_closest_marker("flue")
    options = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise pytest.UsageError("@pytest.mark.flue takes keyword arguments only (TestEnvironment's options).")
    options.setdefault("workflows", flue_workflows)
    async with TestEnvironment(**options) as env:
        yield env

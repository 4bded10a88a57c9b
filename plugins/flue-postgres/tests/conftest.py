"""The Postgres package's tests: a real Postgres of their own (:mod:`flue_postgres.testing`), anyio on
asyncio."""

import pytest

pytest_plugins = ["flue_postgres.testing"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

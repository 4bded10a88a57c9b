"""The published StreamStore contract suite on the Postgres stream store, against a real Postgres."""

from __future__ import annotations

from typing import Any

import pytest

from flue_core.streams.testing import StreamStoreContract
from flue_postgres import PostgresStreamStore


class TestPostgresStreamStore(StreamStoreContract):
    @pytest.fixture
    def make_store(self, postgres_url: str) -> Any:
        return lambda clock: PostgresStreamStore(postgres_url, clock=clock)

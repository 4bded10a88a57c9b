"""The published contract suite, run as the docs tell a third party to run it: the local target over
the Postgres store, against a real Postgres."""

from __future__ import annotations

import pytest

from flue_core.testing import TargetContract
from flue_node_like import LocalTarget
from flue_postgres import PostgresStore


class TestPostgresStore(TargetContract):
    @pytest.fixture
    def make_target(self, postgres_url: str):
        # Every store made with one URL sees the same data (a schema of this test's own): a "restart".
        return lambda: LocalTarget(PostgresStore(postgres_url), shutdown_grace=0.2, sweep_interval=0.1)

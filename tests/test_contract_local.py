"""The contract suite on the local target, over both built-in stores."""

from __future__ import annotations

import uuid

import pytest

from flue_core.testing import TargetContract
from flue_node_like import LocalTarget, MemoryStore, SqliteStore


class TestMemoryStore(TargetContract):
    @pytest.fixture
    def make_target(self):
        url = f"memory://{uuid.uuid4().hex}"  # every store of that name shares its data: a "restart"
        return lambda: LocalTarget(MemoryStore(url), shutdown_grace=0.2, sweep_interval=0.1)


class TestSqliteStore(TargetContract):
    @pytest.fixture
    def make_target(self, tmp_path):
        path = tmp_path / "flue.db"
        return lambda: LocalTarget(SqliteStore(path), shutdown_grace=0.2, sweep_interval=0.1)

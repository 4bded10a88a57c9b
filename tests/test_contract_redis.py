"""The contract suite on the local target over the Redis store, against a real redis-server."""

from __future__ import annotations

import pytest

from flue_core.testing import TargetContract
from flue_node_like import LocalTarget, RedisStore


class TestRedisStore(TargetContract):
    @pytest.fixture
    def make_target(self, redis_url: str):
        # Every store made with one URL sees the same data (a key prefix of this test's own): a "restart".
        return lambda: LocalTarget(RedisStore(redis_url), shutdown_grace=0.2, sweep_interval=0.1)

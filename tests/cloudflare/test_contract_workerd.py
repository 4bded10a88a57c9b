"""The contract suite, unchanged, with every store operation performed by the Cloudflare target's
Durable Objects on a real workerd.

Runs execute on the host (a local target), while everything the store keeps — records, streams,
steps, mailboxes, the ready pool, wake-ups, idempotency keys, schedules, workers — lives in the
objects' SQLite storage, reached through the store Worker (``workers/store_worker.py``). Each test
gets its own scope of objects, so tests do not see each other's runs. Execution inside the Worker
(alarms) is tested in ``test_worker_runs.py``.
"""

from __future__ import annotations

import uuid

import pytest

from flue_cloudflare.devtools import LocalWorker
from flue_cloudflare.devtools.remote_store import RemoteRunStore
from flue_core.testing import TargetContract
from flue_node_like import LocalTarget


class TestDurableObjectStore(TargetContract):
    @pytest.fixture
    def make_target(self, store_worker: LocalWorker):  # type: ignore[no-untyped-def]
        url = f"{store_worker.url}/store/{uuid.uuid4().hex[:16]}"  # a fresh scope: this test's objects only
        return lambda: LocalTarget(RemoteRunStore(url), shutdown_grace=0.2, sweep_interval=0.1)

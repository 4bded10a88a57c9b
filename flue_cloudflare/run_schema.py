"""What a run's Durable Object stores, and the state it keeps of its run in memory.

One object holds one run: its record (one row), its event stream, its step results, its signal
mailbox, the children it heard end, and an *outbox* of messages to other objects (the index, its
parent, its workflow's concurrency limit) that are delivered at least once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flue_core.models import RunRecord, RunStatus

SCHEMA_VERSION = 1

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema INTEGER NOT NULL DEFAULT {SCHEMA_VERSION},
    run_id TEXT NOT NULL,
    record TEXT NOT NULL,
    owner TEXT,
    ready_at TEXT,
    resume INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    next_index INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    seq INTEGER NOT NULL DEFAULT 1,
    slot INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (idx INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    signal_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    signal_key TEXT UNIQUE,
    sent_at TEXT NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS children_ended (run_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS outbox (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (kind, target)
);
"""

HELD = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
PARKED = frozenset({RunStatus.SCHEDULED, RunStatus.WAITING})


@dataclass(frozen=True, slots=True)
class RunState:
    """The run row: the record and what the store keeps beside it.

    ``owner``: the worker a ``queued`` or ``running`` run is held by (``None``: the ready pool).
    ``ready_at``: when it entered the pool (its place in line). ``resume``: woken from a wait, or
    handed back after an interruption: its next claim continues its attempt. ``version`` grows with
    every change of the record or owner (the index keeps the newest version it was sent); ``seq`` with
    every change at all (readers waiting on the run are woken when it grows). ``slot``: the run holds
    a slot of its workflow's concurrency limit.
    """

    record: RunRecord
    owner: str | None
    ready_at: datetime | None
    resume: bool
    closed: bool
    next_index: int
    version: int
    seq: int
    slot: bool

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> RunStatus:
        return self.record.status

    @property
    def in_pool(self) -> bool:
        return self.record.status == RunStatus.QUEUED and self.owner is None

    def but(self, **changes: Any) -> RunState:
        return replace(self, **changes)

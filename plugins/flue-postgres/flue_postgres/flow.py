"""Flow control on Postgres, the Python side: what a take (``op_take`` of ``sql/flow.sql``) and a
debounced admission send, and what a take answers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flue_core.models import format_timestamp
from flue_core.store import Limits, NewRun, Taken
from flue_postgres.rows import dumps, record_of

__all__ = ["debounced_data", "limits_of", "taken_of"]


def limits_of(workflows: Mapping[str, Limits]) -> list[list[Any]]:
    """``[[workflow, concurrency, rate, per]...]``: ``null`` where a limit is not set."""
    return [
        [name, limits.concurrency, limits.rate, None if limits.rate is None else limits.per]
        for name, limits in workflows.items()
    ]


def taken_of(answer: list[Any]) -> Taken:
    """The answer of ``op_take``: ``[[record...], retry_at or null]``."""
    records, retry_at = answer
    return Taken([record_of(row) for row in records], None if retry_at is None else datetime.fromisoformat(retry_at))


def debounced_data(run: NewRun) -> str | None:
    """The ``run_debounced`` event's data, should ``run`` fold into a pending run (``None``: it has no
    debounce key)."""
    if run.debounce_key is None or run.start_at is None:
        return None
    return dumps({"input": run.input, "startAt": format_timestamp(run.start_at)})


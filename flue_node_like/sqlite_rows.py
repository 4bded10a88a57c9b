"""Rows of the SQLite store and the statements its transactions share.

Everything here runs on the connection thread, inside a transaction of the store's writer (or a read).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from flue_core.models import STATUSES, RunError, RunRecord, Schedule, WaitingFor, format_timestamp, parse_timestamp
from flue_core.snapshot import dumps
from flue_core.store import NewEvent, SignalSent, event_json, signal_received_data

COLUMNS = (
    "run_id, workflow, status, input, key, attempt, created_at, started_at, ended_at, result, error,"
    " cancel_requested, parent_run_id, wake_at, waiting_for, carrier, recoveries, rerun_of,"
    " priority, concurrency_key, rate_key, debounce_key"
)
FINISHED = "('completed', 'failed', 'cancelled')"
#: A step result lands once (the first one saved stays), after every step the run saved before it.
SAVE_STEP = (
    "INSERT OR IGNORE INTO flue_steps (run_id, name, value, seq)"
    " SELECT ?1, ?2, ?3, COALESCE(MAX(seq), 0) + 1 FROM flue_steps WHERE run_id = ?1"
)


def record(row: tuple) -> RunRecord:
    """A record from a row this store wrote (trusted: built without re-validation)."""
    (run_id, workflow, status, input_, key, attempt, created, started, ended, result, error, cancel, parent, wake_at,
     waiting_for, carrier, recoveries, rerun_of, priority, concurrency_key, rate_key, debounce_key) = row  # fmt: skip
    return RunRecord.trusted(
        run_id=run_id,
        workflow=workflow,
        status=STATUSES[status],
        input=None if input_ is None else json.loads(input_),
        key=key,
        attempt=attempt,
        created_at=parse_timestamp(created),
        started_at=None if started is None else parse_timestamp(started),
        ended_at=None if ended is None else parse_timestamp(ended),
        result=None if result is None else json.loads(result),
        error=None if error is None else RunError.model_validate_json(error),
        cancel_requested=bool(cancel),
        parent_run_id=parent,
        wake_at=None if wake_at is None else parse_timestamp(wake_at),
        waiting_for=None if waiting_for is None else WaitingFor.model_validate_json(waiting_for),
        carrier=None if carrier is None else json.loads(carrier),
        recoveries=recoveries,
        rerun_of=rerun_of,
        priority=priority,
        concurrency_key=concurrency_key,
        rate_key=rate_key,
        debounce_key=debounce_key,
        queued_for=None,  # told by the runtime when the run is read
    )


def select_record(conn: sqlite3.Connection, run_id: str) -> tuple | None:
    return conn.execute(f"SELECT {COLUMNS} FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()


def next_index(conn: sqlite3.Connection, run_id: str) -> int:
    (tail,) = conn.execute("SELECT MAX(idx) FROM flue_events WHERE run_id = ?", (run_id,)).fetchone()
    return (-1 if tail is None else tail) + 1


def write_event(conn: sqlite3.Connection, run_id: str, type: str, data: dict[str, Any], when: datetime) -> int:
    """Store an event at the end of the run's stream; return the index the next one takes."""
    index = next_index(conn, run_id)
    event = NewEvent(index, type, data, when)
    conn.execute("INSERT INTO flue_events (run_id, idx, data) VALUES (?, ?, ?)", (run_id, index, event_json(run_id, event)))
    return index + 1


def announce_signals(conn: sqlite3.Connection, run_id: str, now: datetime) -> None:
    """Store a ``signal_received`` event for each signal of the run not announced yet."""
    rows = conn.execute(
        "SELECT seq, signal_id, name, data, key, sent_at FROM flue_signals WHERE run_id = ? AND announced = 0 ORDER BY seq",
        (run_id,),
    ).fetchall()
    for seq, signal_id, name, data, key, sent_at in rows:
        sent = SignalSent(signal_id, True, None, name, json.loads(data))  # type: ignore[arg-type]
        write_event(conn, run_id, "signal_received", signal_received_data(sent, key, parse_timestamp(sent_at)), now)
        conn.execute("UPDATE flue_signals SET announced = 1 WHERE run_id = ? AND seq = ?", (run_id, seq))


def wake(conn: sqlite3.Connection, run_id: str, ready_at: str) -> None:
    """Move a parked run to the ready pool."""
    conn.execute(
        "UPDATE flue_runs SET status = 'queued', owner = NULL, ready_at = ?, wake_at = NULL, waiting_for = NULL"
        " WHERE run_id = ?",
        (ready_at, run_id),
    )


def unfinished_among(conn: sqlite3.Connection, run_ids: list[str]) -> int:
    if not run_ids:
        return 0
    marks = ", ".join("?" * len(run_ids))
    (count,) = conn.execute(
        f"SELECT COUNT(*) FROM flue_runs WHERE run_id IN ({marks}) AND status NOT IN {FINISHED}", run_ids
    ).fetchone()
    return count


def schedule_row(schedule: Schedule) -> tuple[str, str, str | None]:
    definition = schedule.model_dump(mode="json", exclude={"last_tick"})
    last = None if schedule.last_tick is None else format_timestamp(schedule.last_tick)
    return schedule.name, dumps(definition), last


def schedule_of(row: tuple) -> Schedule:
    name, definition, last = row
    return Schedule.model_validate({**json.loads(definition), "name": name, "last_tick": last})

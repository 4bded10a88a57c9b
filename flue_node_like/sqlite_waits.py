"""The SQLite store's transactions for waiting: suspension, wake-ups and signals (the ready pool's
takes are in :mod:`~flue_node_like.sqlite_flow`).

Each function is one unit of a writer batch (it runs on the connection thread, in the batch's
transaction); ``touched`` collects what the change listener hears of once the batch commits.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from flue_core.errors import RunFinished, RunNotFound
from flue_core.models import RunRecord, WaitingFor, format_timestamp, parse_timestamp
from flue_core.snapshot import dumps
from flue_core.store import READY, Delivery, NewSignal, SignalSent, Suspended, Suspension, delivered_step_value
from flue_node_like.sqlite_rows import (
    COLUMNS,
    SAVE_STEP,
    announce_signals,
    next_index,
    record,
    select_record,
    unfinished_among,
    wake,
    write_event,
)


def suspend(
    conn: sqlite3.Connection, run_id: str, owner: str, suspension: Suspension, now: datetime, touched: set[str]
) -> Suspended | None:
    row = conn.execute("SELECT status, owner FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None or row[0] != "running" or row[1] != owner:
        return None
    announce_signals(conn, run_id, now)
    waiting_for = suspension.waiting_for
    current = record(select_record(conn, run_id))  # type: ignore[arg-type]
    if current.cancel_requested or _satisfied(conn, run_id, waiting_for):
        return Suspended(False, next_index(conn, run_id), current)
    wake_at = None if suspension.wake_at is None else format_timestamp(suspension.wake_at)
    updated = conn.execute(
        "UPDATE flue_runs SET status = 'waiting', owner = NULL, wake_at = ?, waiting_for = ?, resume = ?"
        f" WHERE run_id = ? RETURNING {COLUMNS}",
        (wake_at, waiting_for.model_dump_json(exclude_none=True), int(waiting_for.kind != "retry"), run_id),
    ).fetchone()
    index = write_event(conn, run_id, "run_waiting", suspension.event_data(), now)
    touched.add(READY)
    return Suspended(True, index, record(updated))


def _satisfied(conn: sqlite3.Connection, run_id: str, waiting_for: WaitingFor) -> bool:
    if waiting_for.kind == "signal":
        row = conn.execute(
            "SELECT 1 FROM flue_signals WHERE run_id = ? AND name = ? AND delivered = 0 LIMIT 1", (run_id, waiting_for.name)
        ).fetchone()
        return row is not None
    if waiting_for.kind == "children":
        return unfinished_among(conn, list(waiting_for.run_ids or ())) == 0
    return False


def wake_parent(conn: sqlite3.Connection, child: RunRecord, now: str, touched: set[str]) -> None:
    """After ``child`` ended: wake its parent if it waits for children that have all ended now."""
    if child.parent_run_id is None:
        return
    row = conn.execute(
        "SELECT waiting_for FROM flue_runs WHERE run_id = ? AND status = 'waiting'", (child.parent_run_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return
    waiting_for = WaitingFor.model_validate_json(row[0])
    awaited = list(waiting_for.run_ids or ())
    if waiting_for.kind == "children" and child.run_id in awaited and unfinished_among(conn, awaited) == 0:
        wake(conn, child.parent_run_id, now)
        touched.update((child.parent_run_id, READY))


def wake_due(conn: sqlite3.Connection, now: str, limit: int, touched: set[str]) -> int:
    rows = conn.execute(
        "UPDATE flue_runs SET status = 'queued', owner = NULL, ready_at = wake_at, wake_at = NULL, waiting_for = NULL"
        " WHERE run_id IN (SELECT run_id FROM flue_runs WHERE wake_at IS NOT NULL AND wake_at <= ? ORDER BY wake_at LIMIT ?)"
        " RETURNING run_id",
        (now, limit),
    ).fetchall()
    if rows:
        touched.update(row[0] for row in rows)
        touched.add(READY)
    return len(rows)


def send_signal(conn: sqlite3.Connection, run_id: str, signal: NewSignal, touched: set[str]) -> SignalSent:
    row = conn.execute("SELECT status, waiting_for FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    status, waiting_for = row
    if signal.key is not None:
        kept = conn.execute(
            "SELECT signal_id, name, data FROM flue_signals WHERE run_id = ? AND key = ?", (run_id, signal.key)
        ).fetchone()
        if kept is not None:
            current = record(select_record(conn, run_id))  # type: ignore[arg-type]
            return SignalSent(kept[0], False, current, kept[1], json.loads(kept[2]))
    if status in ("completed", "failed", "cancelled"):
        raise RunFinished(
            f"Run {run_id} has ended ({status}); it takes no more signals.", details={"run_id": run_id, "status": status}
        )
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM flue_signals WHERE run_id = ?", (run_id,)).fetchone()
    conn.execute(
        "INSERT INTO flue_signals (run_id, seq, signal_id, name, data, key, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, seq, signal.signal_id, signal.name, dumps(signal.data), signal.key, format_timestamp(signal.sent_at)),
    )
    if status != "running":
        announce_signals(conn, run_id, signal.sent_at)
    if status == "waiting" and waiting_for is not None:
        wanted = WaitingFor.model_validate_json(waiting_for)
        if wanted.kind == "signal" and wanted.name == signal.name:
            wake(conn, run_id, format_timestamp(signal.sent_at))
            touched.add(READY)
    current = record(select_record(conn, run_id))  # type: ignore[arg-type]
    return SignalSent(signal.signal_id, True, current, signal.name, signal.data)


def take_signal(
    conn: sqlite3.Connection, run_id: str, owner: str, name: str, step: str, now: datetime, sent_by: datetime | None
) -> Delivery | None:
    row = conn.execute("SELECT status, owner FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None or row[0] != "running" or row[1] != owner:
        return None
    announce_signals(conn, run_id, now)
    latest = None if sent_by is None else format_timestamp(sent_by)
    found = conn.execute(
        "SELECT seq, signal_id, data, sent_at FROM flue_signals WHERE run_id = ? AND name = ? AND delivered = 0"
        " AND (? IS NULL OR sent_at <= ?) ORDER BY seq LIMIT 1",
        (run_id, name, latest, latest),
    ).fetchone()
    if found is None:
        return Delivery(None, next_index(conn, run_id))
    seq, signal_id, data, sent_at = found
    conn.execute("UPDATE flue_signals SET delivered = 1 WHERE run_id = ? AND seq = ?", (run_id, seq))
    current = record(select_record(conn, run_id))  # type: ignore[arg-type]
    sent = SignalSent(signal_id, True, current, name, json.loads(data))
    conn.execute(SAVE_STEP, (run_id, step, dumps(delivered_step_value(sent, parse_timestamp(sent_at)))))
    index = write_event(conn, run_id, "signal_delivered", {"signalId": signal_id, "name": name}, now)
    return Delivery(sent, index)


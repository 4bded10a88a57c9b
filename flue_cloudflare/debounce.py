"""Debounced starts on the Cloudflare target: the index object keeps which run is pending for each
(workflow, debounce key), and a start within the window folds into that run in the run's own object.

The index decides, in one event, whether an admission creates the pending run or folds into the one
there (so racing admissions fold into one run); the run's object is the judge of whether its run is
still pending: when it has woken meanwhile, the fold is refused and the admission asks the index
again, naming the run that is no longer pending.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from flue_core.models import RunRecord, RunStatus, format_timestamp
from flue_core.store import READY
from flue_cloudflare.sql import Sql

if TYPE_CHECKING:
    from flue_cloudflare.run_ledger import RunLedger
    from flue_cloudflare.run_schema import RunState

SCHEMA = """
CREATE TABLE IF NOT EXISTS debounces (
    workflow TEXT NOT NULL,
    debounce_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    admission TEXT NOT NULL,
    PRIMARY KEY (workflow, debounce_key)
);
CREATE INDEX IF NOT EXISTS debounces_run ON debounces (run_id);
"""

#: What an admission does, as the index answers it: create its run, fold into the pending run, or
#: (its idempotency key is bound) answer with the run the key names.
CREATE, FOLD, BOUND = "create", "fold", "bound"


def decide(sql: Sql, wire: dict[str, Any]) -> tuple[str, str, str]:
    """``(what, run_id, admission)`` for the admission ``wire`` (``workflow``, ``debounceKey``,
    ``runId``, ``admission``, ``key``, ``stale``: a run found no longer pending). On :data:`CREATE`
    the run is the pending one from now on, and its idempotency key is bound to it."""
    workflow, key, run_id = wire["workflow"], wire["debounceKey"], wire["runId"]
    if wire.get("key") is not None:
        query = "SELECT run_id, admission FROM run_keys WHERE workflow = ? AND run_key = ?"
        bound = sql.one(query, workflow, wire["key"])
        if bound is not None:
            return BOUND, bound["run_id"], bound["admission"]
    if wire.get("stale") is not None:
        sql.run(
            "DELETE FROM debounces WHERE workflow = ? AND debounce_key = ? AND run_id = ?", workflow, key, wire["stale"]
        )
    sql.run(
        "INSERT OR IGNORE INTO debounces (workflow, debounce_key, run_id, admission) VALUES (?, ?, ?, ?)",
        workflow, key, run_id, wire["admission"],
    )  # fmt: skip
    pending = sql.one("SELECT run_id, admission FROM debounces WHERE workflow = ? AND debounce_key = ?", workflow, key)
    assert pending is not None
    if pending["run_id"] != run_id:
        return FOLD, pending["run_id"], pending["admission"]
    if wire.get("key") is not None:
        sql.run(
            "INSERT INTO run_keys (workflow, run_key, run_id, admission) VALUES (?, ?, ?, ?)",
            workflow, wire["key"], run_id, wire["admission"],
        )  # fmt: skip
    return CREATE, run_id, wire["admission"]


def settled(sql: Sql, row: dict[str, Any]) -> None:
    """The index heard of a debounced run's change: once it is no longer scheduled it takes no folds."""
    if row.get("debounceKey") is not None and row["status"] != RunStatus.SCHEDULED.value:
        forget(sql, row["runId"])


def forget(sql: Sql, run_id: str) -> None:
    sql.run("DELETE FROM debounces WHERE run_id = ?", run_id)


def fold(ledger: RunLedger, input: Any, start_at: datetime) -> RunRecord | None:
    """Fold a start into the ledger's run if it is still pending (``scheduled``, waiting for its
    debounce window): it takes ``input`` and starts at ``start_at``, and a ``run_debounced`` event
    says so. ``None`` when it is not pending."""

    def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
        waiting_for = None if state is None else state.record.waiting_for
        if state is None or state.status != RunStatus.SCHEDULED or waiting_for is None:
            return None, None
        if waiting_for.kind != "debounce":
            return None, None
        record = state.record.model_copy(update={"input": input, "wake_at": start_at})
        data = {"input": input, "startAt": format_timestamp(start_at)}
        ledger.changed.add(READY)  # a wake-up time was set
        return record, ledger._write(state.but(record=record), "run_debounced", data)

    return ledger._mutate(work)

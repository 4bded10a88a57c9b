"""Debounced starts on the Cloudflare target: the index object keeps which run is pending for each
(workflow, debounce key), and a start within the window folds into that run in the run's own object.

The index decides, in one event, whether an admission creates the pending run or folds into the one
there (so racing admissions fold into one run); the run's object is the judge of whether its run is
still pending: when it has woken or been asked to cancel meanwhile, the fold is refused and the
admission asks the index again, naming the run that is no longer pending (the index forgets it, and
the admission creates the key's new pending run). A run asked to cancel is forgotten by the index as
soon as its row says so, too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flue_core.models import RunRecord, RunStatus, format_timestamp
from flue_core.store import READY
from flue_cloudflare import codec
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
    """The index heard of a debounced run's change: once it is no longer scheduled, or is asked to
    cancel, it takes no folds (the next start creates the key's pending run)."""
    if row.get("debounceKey") is not None and (row["status"] != RunStatus.SCHEDULED.value or row["cancel"]):
        forget(sql, row["runId"])


def forget(sql: Sql, run_id: str) -> None:
    sql.run("DELETE FROM debounces WHERE run_id = ?", run_id)


def fold(ledger: RunLedger, wire: dict[str, Any]) -> RunRecord | None:
    """Fold a start (``wire``: its ``input``, ``startAt``, ``priority``, ``concurrencyKey`` and
    ``rateKey``) into the ledger's run if it is still pending (``scheduled``, waiting for its debounce
    window, not asked to cancel): it takes the input, starts at ``startAt`` and takes the start's
    priority and flow keys (they follow the input; the index's copy moves with the record), and a
    ``run_debounced`` event says so. ``None`` when it is not pending."""
    start_at = codec.moment(wire["startAt"])
    assert start_at is not None

    def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
        waiting_for = None if state is None else state.record.waiting_for
        if state is None or state.status != RunStatus.SCHEDULED or waiting_for is None:
            return None, None
        if waiting_for.kind != "debounce" or state.record.cancel_requested:
            return None, None
        changes: dict[str, Any] = {"input": wire["input"], "wake_at": start_at}
        if "priority" in wire:  # a start from an isolate older than this carries none: the run's own stay
            changes.update(priority=wire["priority"], concurrency_key=wire["concurrencyKey"], rate_key=wire["rateKey"])
        record = state.record.model_copy(update=changes)
        data = {"input": wire["input"], "startAt": format_timestamp(start_at)}
        ledger.changed.add(READY)  # a wake-up time was set
        return record, ledger._write(state.but(record=record), "run_debounced", data)

    return ledger._mutate(work)

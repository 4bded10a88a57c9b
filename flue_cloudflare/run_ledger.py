"""The rules of :class:`~flue_core.store.RunStore` for the one run a Durable Object holds.

Every operation is synchronous and runs in one storage transaction, so it is atomic by itself: a
Durable Object runs one event at a time, and nothing else can interleave with code that does not
await. Operations that touch other runs (the index, a parent, a concurrency limit) leave a message
in the outbox (:mod:`flue_cloudflare.run_schema`), which the object delivers after the transaction.
The run's state is cached in memory between operations (the object is its only writer) and replaced
only once a transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from flue_core.errors import RunFinished, RunIdConflict, RunNotFound
from flue_core.models import RunRecord, RunStatus, WaitingFor, utc_now
from flue_core.snapshot import dumps as snapshot_dumps
from flue_core.store import (
    CANCELS,
    READY,
    Admission,
    Attempt,
    Delivery,
    EventPage,
    NewEvent,
    NewRun,
    NewSignal,
    Outcome,
    SignalSent,
    StoredEvent,
    Suspended,
    Suspension,
    delivered_step_value,
    event_json,
    signal_received_data,
)
from flue_cloudflare import codec
from flue_cloudflare.calls import slot_object
from flue_cloudflare.run_schema import HELD, PARKED, SCHEMA, SCHEMA_VERSION, RunState
from flue_cloudflare.sql import Sql

T = TypeVar("T")
_UNLOADED: Any = object()

#: Outbox kinds: the index's copy of the record; a parent told that this child ended; a concurrency
#: slot given back.
INDEX, PARENT, RELEASE = "index", "parent", "release"


class RunLedger:
    """One run's record, stream, steps, mailbox and outbox in its object's SQLite storage.

    ``changed`` collects what listeners must hear (the run's id, :data:`~flue_core.store.READY`,
    :data:`~flue_core.store.CANCELS`) since the caller last cleared it. ``pool_in_index``: the index
    answers the ready pool's queries (workers elsewhere execute the runs), so it is sent the run's
    owner and place in the pool too; when the run's own object executes it, only record changes are.
    """

    def __init__(self, sql: Sql, run_id: str, *, pool_in_index: bool = True) -> None:
        self.sql = sql
        self.run_id = run_id
        self.pool_in_index = pool_in_index
        self.changed: set[str] = set()
        self._state: RunState | None = _UNLOADED
        self._created = sql.has_table("run")
        # Kept in memory between transactions (the object is the only writer), each loaded on first
        # use: the outbox's messages, and how many signals are not announced yet.
        self._outbox: dict[tuple[str, str], str] | None = None
        self._unannounced: int | None = None
        # Messages delivered but still in the outbox table: removed by the next transaction, so that
        # removing them adds no commit to the answer that delivered them.
        self._delivered: set[tuple[str, str, str]] = set()
        # What a transaction changes in memory, applied once it committed.
        self._on_commit: list[Callable[[], None]] = []
        # A committed transaction put a message in the outbox since the caller last cleared this.
        self.posted = False

    # -- state --------------------------------------------------------------------------------------

    def state(self) -> RunState | None:
        if self._state is _UNLOADED:
            self._state = self._load()
        return self._state

    def _load(self) -> RunState | None:
        if not self._created:
            return None
        row = self.sql.one("SELECT * FROM run WHERE id = 1")
        if row is None:
            return None
        if row["schema"] != SCHEMA_VERSION:
            from flue_core.errors import UnsupportedSchemaVersion

            raise UnsupportedSchemaVersion(
                f"Run {row['run_id']} was stored by schema version {row['schema']}; this code reads {SCHEMA_VERSION}."
            )
        return RunState(
            record=codec.record_of(row["record"]),
            owner=row["owner"],
            ready_at=codec.moment(row["ready_at"]),
            resume=bool(row["resume"]),
            closed=bool(row["closed"]),
            next_index=row["next_index"],
            version=row["version"],
            seq=row["seq"],
            slot=bool(row["slot"]),
        )

    @property
    def seq(self) -> int:
        state = self.state()
        return 0 if state is None else state.seq

    def _mutate(self, work: Callable[[RunState | None], tuple[T, RunState | None]]) -> T:
        """Run ``work(state)`` in a transaction; it returns its result and the new state to save
        (``None``: nothing changed)."""

        def body() -> tuple[T, RunState | None]:
            self._forget_delivered()
            result, state = work(self.state())
            return result, None if state is None else self._save(state)

        changed_before = set(self.changed)
        try:
            result, state = self.sql.transaction(body)
        except BaseException:
            self.changed = changed_before
            self._on_commit.clear()
            raise
        if state is not None:
            self._state = state
        self._committed()
        return result

    def _committed(self) -> None:
        actions, self._on_commit = self._on_commit, []
        for action in actions:
            action()

    def _save(self, state: RunState) -> RunState:
        """Write the run row as ``state`` says (bumping ``seq``, and ``version`` when the record,
        owner or place in the pool changed), queue the index's copy in the outbox, and return the
        state as saved."""
        before = None if self._state is _UNLOADED else self._state
        if before is None:
            indexed = True
        elif self.pool_in_index:
            indexed = (before.record, before.owner, before.ready_at) != (state.record, state.owner, state.ready_at)
        else:
            indexed = before.record != state.record
        state = state.but(seq=state.seq + 1, version=state.version + (1 if indexed else 0))
        self.sql.run(
            "UPDATE run SET record = ?, owner = ?, ready_at = ?, resume = ?, closed = ?, next_index = ?,"
            " version = ?, seq = ?, slot = ? WHERE id = 1",
            codec.record_json(state.record),
            state.owner,
            codec.when(state.ready_at),
            int(state.resume),
            int(state.closed),
            state.next_index,
            state.version,
            state.seq,
            int(state.slot),
        )
        if indexed:
            self._send(INDEX, "", index_row(state))
        self.changed.add(state.run_id)
        return state

    def _write(self, state: RunState, type: str, data: dict[str, Any], when: datetime | None = None) -> RunState:
        """Store an event at the end of the stream (the store's own writes)."""
        event = NewEvent(state.next_index, type, data, when or utc_now())
        self.sql.run("INSERT INTO events (idx, body) VALUES (?, ?)", event.index, event_json(state.run_id, event))
        return state.but(next_index=state.next_index + 1)

    def _announce(self, state: RunState) -> RunState:
        if self._unannounced is None:
            self._unannounced = int(self.sql.value("SELECT count(*) AS n FROM signals WHERE announced = 0"))
        if not self._unannounced:
            return state
        for row in self.sql.rows("SELECT * FROM signals WHERE announced = 0 ORDER BY seq"):
            sent = SignalSent(row["signal_id"], True, state.record, row["name"], codec.loads(row["data"]))
            state = self._write(
                state, "signal_received", signal_received_data(sent, row["signal_key"], codec.moment(row["sent_at"]))
            )
        self.sql.run("UPDATE signals SET announced = 1 WHERE announced = 0")
        self._on_commit.append(lambda: setattr(self, "_unannounced", 0))
        return state

    def _wake(self, state: RunState, ready_at: datetime) -> RunState:
        record = state.record.model_copy(update={"status": RunStatus.QUEUED, "wake_at": None, "waiting_for": None})
        self.changed.add(READY)
        return state.but(record=record, owner=None, ready_at=ready_at)

    def _held(self, owner: str) -> RunState | None:
        state = self.state()
        if state is None or state.status != RunStatus.RUNNING or state.owner != owner:
            return None
        return state

    # -- admission and lifecycle --------------------------------------------------------------------

    def admit(self, run: NewRun, *, keyed: bool) -> Admission:
        """Create the run (see :meth:`RunStore.admit`). ``keyed``: the index bound ``run.key`` to
        this run id, so an existing run with that key is the same admission, not a conflict."""
        existing = self.state()
        if existing is not None:
            record = existing.record
            if keyed and record.key == run.key and record.workflow == run.workflow:
                return Admission(record, created=False)
            raise RunIdConflict(f"A run with id {run.run_id!r} already exists.", details={"run_id": run.run_id})
        state = admitted(run)
        owner = state.owner

        def create() -> RunState:
            self.sql.script(SCHEMA)
            self.sql.run(
                "INSERT INTO run (id, run_id, record, owner, ready_at, next_index, version, seq)"
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                run.run_id,
                codec.record_json(state.record),
                owner,
                codec.when(state.ready_at),
                state.next_index,
                state.version,
                state.seq,
            )
            self.sql.run("INSERT INTO events (idx, body) VALUES (0, ?)", event_json(run.run_id, run.first_event))
            for name, value in run.steps:  # the re-run run's results, in order (a repeated name: the first is kept)
                self.sql.run("INSERT OR IGNORE INTO steps (name, value) VALUES (?, ?)", name, value)
            self._send(INDEX, "", index_row(state))
            self.changed.add(run.run_id)
            return state

        self._created = True
        try:
            self._state = self.sql.transaction(create)
        except BaseException:
            self._state = _UNLOADED
            self._created = self.sql.has_table("run")
            self._on_commit.clear()
            raise
        self._committed()
        if owner is None:
            self.changed.add(READY)
        return Admission(self._state.record, created=True)

    def claim(self, owner: str, *, over_limit: bool = False) -> Attempt | None:
        def work(state: RunState | None) -> tuple[Attempt | None, RunState | None]:
            if state is None or state.status != RunStatus.QUEUED or state.owner != owner:
                return None, None
            if over_limit:
                self.changed.add(READY)
                return None, self._give_back_slot(state.but(owner=None))
            state = self._announce(state)
            record = state.record
            record = record.model_copy(
                update={
                    "status": RunStatus.RUNNING,
                    "attempt": record.attempt + (0 if state.resume else 1),
                    "started_at": record.started_at or utc_now(),
                }
            )
            return Attempt(record, state.next_index, state.resume), state.but(record=record, resume=False)

        return self._mutate(work)

    def requeue(self, owner: str | None, held_by: str | None, *, interrupted: bool = False) -> RunRecord | None:
        """Hand the running run back (see :meth:`RunStore.requeue`). ``interrupted``: it counts a
        recovery, and its next claim continues the attempt (as after a wait)."""

        def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
            if state is None or state.status != RunStatus.RUNNING or (held_by is not None and state.owner != held_by):
                return None, None
            update: dict[str, Any] = {"status": RunStatus.QUEUED}
            if interrupted:
                update["recoveries"] = state.record.recoveries + 1
            record = state.record.model_copy(update=update)
            state = state.but(record=record, owner=owner, resume=interrupted, ready_at=utc_now())
            if owner is None:
                self.changed.add(READY)
                state = self._give_back_slot(state)
            return record, state

        return self._mutate(work)

    def suspend(self, owner: str, suspension: Suspension) -> Suspended | None:
        def work(state: RunState | None) -> tuple[Suspended | None, RunState | None]:
            if self._held(owner) is None or state is None:
                return None, None
            state = self._announce(state)
            waiting_for = suspension.waiting_for
            if state.record.cancel_requested or self._satisfied(waiting_for):
                return Suspended(False, state.next_index, state.record), state
            record = state.record.model_copy(
                update={"status": RunStatus.WAITING, "wake_at": suspension.wake_at, "waiting_for": waiting_for}
            )
            state = state.but(record=record, owner=None, resume=waiting_for.kind != "retry")
            state = self._write(self._give_back_slot(state), "run_waiting", suspension.event_data())
            self.changed.add(READY)
            return Suspended(True, state.next_index, record), state

        return self._mutate(work)

    def _satisfied(self, waiting_for: WaitingFor) -> bool:
        if waiting_for.kind == "signal":
            found = self.sql.one(
                "SELECT 1 AS found FROM signals WHERE delivered = 0 AND name = ? LIMIT 1", waiting_for.name
            )
            return found is not None
        if waiting_for.kind == "children":
            return self._children_ended(waiting_for.run_ids or ())
        return False

    def _children_ended(self, run_ids: Collection[str]) -> bool:
        ended = {row["run_id"] for row in self.sql.rows("SELECT run_id FROM children_ended")}
        return all(run_id in ended for run_id in run_ids)

    def finish(
        self, outcome: Outcome, only_from: Collection[RunStatus] | None, held_by: str | None
    ) -> RunRecord | None:
        def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
            if state is None:
                return None, None
            record = state.record
            if (
                record.finished
                or (only_from is not None and record.status not in only_from)
                or (held_by is not None and state.owner != held_by)
            ):
                return record, None
            state = self._announce(state)
            state = self._write(state, "run_end", outcome.event_data(record.started_at), outcome.ended_at)
            record = record.model_copy(
                update={
                    "status": outcome.status,
                    "ended_at": outcome.ended_at,
                    "result": outcome.result,
                    "error": outcome.error,
                    "wake_at": None,
                    "waiting_for": None,
                }
            )
            if record.parent_run_id is not None:
                self._send(PARENT, record.parent_run_id, {"child": record.run_id})
            return record, self._give_back_slot(state.but(record=record, closed=True))

        return self._mutate(work)

    def request_cancel(self) -> RunRecord | None:
        def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
            if state is None:
                return None, None
            if state.record.finished or state.record.cancel_requested:
                return state.record, None
            record = state.record.model_copy(update={"cancel_requested": True})
            self.changed.add(CANCELS)
            return record, state.but(record=record)

        return self._mutate(work)

    # -- the ready pool and the due-time index (this run's part) ------------------------------------

    def take(self, owner: str) -> RunRecord | None:
        """Give ``owner`` this run if it is in the ready pool (``take_ready``'s part for one run)."""

        def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
            if state is None or not state.in_pool:
                return None, None
            return state.record, state.but(owner=owner)

        return self._mutate(work)

    def wake(self, now: datetime) -> bool:
        """Move the run to the ready pool if it is parked and due at ``now`` (``wake_due``'s part)."""

        def work(state: RunState | None) -> tuple[bool, RunState | None]:
            if (
                state is None
                or state.status not in PARKED
                or state.record.wake_at is None
                or state.record.wake_at > now
            ):
                return False, None
            return True, self._wake(state, state.record.wake_at)

        return self._mutate(work)

    def child_ended(self, child_id: str) -> bool:
        """Note that child ``child_id`` ended; wake the run if that was the last child it waits for."""

        def work(state: RunState | None) -> tuple[bool, RunState | None]:
            if state is None:
                return False, None
            self.sql.run("INSERT OR IGNORE INTO children_ended (run_id) VALUES (?)", child_id)
            waiting_for = state.record.waiting_for
            if state.status != RunStatus.WAITING or waiting_for is None or waiting_for.kind != "children":
                return False, None
            if child_id not in (waiting_for.run_ids or ()) or not self._children_ended(waiting_for.run_ids or ()):
                return False, None
            return True, self._wake(state, utc_now())

        return self._mutate(work)

    def adopt(self, owner: str, previous: str) -> RunRecord | None:
        """Give ``owner`` the run if it is held by ``previous`` (a worker judged dead)."""

        def work(state: RunState | None) -> tuple[RunRecord | None, RunState | None]:
            if state is None or state.status not in HELD or state.owner != previous:
                return None, None
            return state.record, state.but(owner=owner)

        return self._mutate(work)

    def hold_slot(self) -> None:
        """Remember that the run holds a slot of its workflow's concurrency limit (released when it
        leaves the workers' hands)."""
        self._mutate(lambda state: (None, None if state is None or state.slot else state.but(slot=True)))

    def resend_index(self) -> None:
        """Queue the index's copy of the run again, at its current version."""
        self._mutate(lambda state: (None, None) if state is None else (self._send(INDEX, "", index_row(state)), None))

    def _give_back_slot(self, state: RunState) -> RunState:
        """The run leaves the workers' hands (it waits, went back to the pool, or ended): its slot
        of the concurrency limit goes back."""
        if not state.slot:
            return state
        record = state.record
        message = {"runId": state.run_id, "workflow": record.workflow}
        self._send(RELEASE, slot_object(record.workflow, record.concurrency_key), message)
        return state.but(slot=False)

    def prunable(self, ended_before: datetime) -> bool:
        """Whether the run ended before ``ended_before`` (and may be deleted)."""
        state = self.state()
        return state is not None and state.record.ended_at is not None and state.record.ended_at < ended_before

    def forget(self) -> None:
        """The object's storage was deleted: nothing is stored any more."""
        self._state, self._created = None, False
        self._outbox, self._unannounced, self._delivered = None, None, set()

    # -- events -------------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent]) -> None:
        def work(state: RunState | None) -> tuple[None, RunState | None]:
            if state is None or state.closed:
                return None, None
            start = state.next_index
            for event in events:
                if event.index == state.next_index:
                    self.sql.run(
                        "INSERT INTO events (idx, body) VALUES (?, ?)", event.index, event_json(state.run_id, event)
                    )
                    state = state.but(next_index=state.next_index + 1)
            return None, state if state.next_index > start else None

        self._mutate(work)

    def read(self, after: int | None, limit: int) -> EventPage | None:
        state = self.state()
        if state is None:
            return None
        tail = state.next_index - 1
        start = tail + 1 if after is None else max(after + 1, 0)
        rows = (
            self.sql.rows("SELECT idx, body FROM events WHERE idx >= ? ORDER BY idx LIMIT ?", start, max(limit, 0))
            if limit > 0
            else []
        )
        return EventPage([StoredEvent(row["idx"], row["body"]) for row in rows], tail, state.closed)

    # -- records and steps --------------------------------------------------------------------------

    def get(self) -> RunRecord | None:
        state = self.state()
        return None if state is None else state.record

    def save_step(self, name: str, value: str) -> None:
        if self.state() is not None:
            self.sql.run("INSERT OR IGNORE INTO steps (name, value) VALUES (?, ?)", name, value)

    def load_steps(self) -> dict[str, str]:
        if self.state() is None:
            return {}
        # A step is never saved twice (INSERT OR IGNORE) nor deleted, so rowids keep the order of first saves.
        return {row["name"]: row["value"] for row in self.sql.rows("SELECT name, value FROM steps ORDER BY rowid")}

    # -- signals ------------------------------------------------------------------------------------

    def send_signal(self, signal: NewSignal) -> SignalSent:
        def work(state: RunState | None) -> tuple[SignalSent, RunState | None]:
            if state is None:
                raise RunNotFound(f"Run {self.run_id!r} was not found.", details={"run_id": self.run_id})
            record = state.record
            if signal.key is not None:
                kept = self.sql.one("SELECT signal_id, name, data FROM signals WHERE signal_key = ?", signal.key)
                if kept is not None:
                    return SignalSent(kept["signal_id"], False, record, kept["name"], codec.loads(kept["data"])), None
            if record.finished:
                raise RunFinished(
                    f"Run {record.run_id} has ended ({record.status.value}); it takes no more signals.",
                    details={"run_id": record.run_id, "status": record.status.value},
                )
            self.sql.run(
                "INSERT INTO signals (signal_id, name, data, signal_key, sent_at) VALUES (?, ?, ?, ?, ?)",
                signal.signal_id,
                signal.name,
                codec.dumps(signal.data),
                signal.key,
                codec.when(signal.sent_at),
            )
            if self._unannounced is not None:
                self._unannounced += 1
            if record.status != RunStatus.RUNNING:
                state = self._announce(state)
            waiting_for = record.waiting_for
            if record.status == RunStatus.WAITING and waiting_for is not None and waiting_for.kind == "signal":
                if waiting_for.name == signal.name:
                    state = self._wake(state, signal.sent_at)
            return SignalSent(signal.signal_id, True, state.record, signal.name, signal.data), state

        return self._mutate(work)

    def take_signal(self, owner: str, name: str, step: str, sent_by: datetime | None = None) -> Delivery | None:
        def work(state: RunState | None) -> tuple[Delivery | None, RunState | None]:
            if self._held(owner) is None or state is None:
                return None, None
            state = self._announce(state)
            latest = codec.when(sent_by)
            row = self.sql.one(
                "SELECT * FROM signals WHERE delivered = 0 AND name = ? AND (? IS NULL OR sent_at <= ?)"
                " ORDER BY seq LIMIT 1",
                name,
                latest,
                latest,
            )
            if row is None:
                return Delivery(None, state.next_index), state
            self.sql.run("UPDATE signals SET delivered = 1 WHERE seq = ?", row["seq"])
            sent = SignalSent(row["signal_id"], True, state.record, name, codec.loads(row["data"]))
            value = snapshot_dumps(delivered_step_value(sent, codec.moment(row["sent_at"])))
            self.sql.run("INSERT OR IGNORE INTO steps (name, value) VALUES (?, ?)", step, value)
            state = self._write(state, "signal_delivered", {"signalId": sent.signal_id, "name": name})
            return Delivery(sent, state.next_index), state

        return self._mutate(work)

    # -- the outbox ---------------------------------------------------------------------------------

    def _send(self, kind: str, target: str, payload: dict[str, Any]) -> None:
        text = codec.dumps(payload)
        self.sql.run("INSERT OR REPLACE INTO outbox (kind, target, payload) VALUES (?, ?, ?)", kind, target, text)

        def posted() -> None:
            self._messages()[kind, target] = text
            self.posted = True

        self._on_commit.append(posted)

    def _messages(self) -> dict[tuple[str, str], str]:
        if self._outbox is None:
            rows = self.sql.rows("SELECT * FROM outbox") if self._created else []
            self._outbox = {(row["kind"], row["target"]): row["payload"] for row in rows}
        return self._outbox

    def outbox(self) -> list[tuple[str, str, str]]:
        """Messages not yet delivered: ``(kind, target, payload)``."""
        found = [(kind, target, payload) for (kind, target), payload in self._messages().items()]
        return [message for message in found if message not in self._delivered]

    def delivered(self, kind: str, target: str, payload: str) -> None:
        """Note that a message was delivered: it leaves the table with the next transaction (unless a
        newer one replaced it meanwhile). Should the object die first, it is delivered once more."""
        self._delivered.add((kind, target, payload))

    def _forget_delivered(self) -> None:
        for kind, target, payload in self._delivered:
            self.sql.run("DELETE FROM outbox WHERE kind = ? AND target = ? AND payload = ?", kind, target, payload)
        forgotten, self._delivered = self._delivered, set()

        def forget() -> None:
            messages = self._messages()
            for kind, target, payload in forgotten:
                if messages.get((kind, target)) == payload:
                    del messages[(kind, target)]

        self._on_commit.append(forget)


def admitted(run: NewRun) -> RunState:
    """The state :meth:`RunLedger.admit` stores for ``run`` (at version 1)."""
    scheduled = run.scheduled
    owner = None if scheduled else run.owner
    return RunState(run.record(), owner, None if scheduled else run.created_at, False, False, 1, 1, 1, False)


def index_row(state: RunState) -> dict[str, Any]:
    """What the index keeps of a run, at ``state.version``."""
    record = state.record
    return {
        "runId": record.run_id,
        "version": state.version,
        "workflow": record.workflow,
        "status": record.status.value,
        "createdAt": codec.when(record.created_at),
        "parent": record.parent_run_id,
        "rerunOf": record.rerun_of,
        "endedAt": codec.when(record.ended_at),
        "key": record.key,
        "owner": state.owner,
        "readyAt": codec.when(state.ready_at) if state.in_pool else None,
        "wakeAt": codec.when(record.wake_at) if record.status in PARKED else None,
        "cancel": record.cancel_requested,
        "record": codec.record_json(record),
        "priority": record.priority,
        "concurrencyKey": record.concurrency_key,
        "rateKey": record.rate_key,
        "debounceKey": record.debounce_key,
        "startedAt": codec.when(record.started_at),
    }

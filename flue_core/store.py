"""The storage contract every backend implements: run records, event streams, steps and workers.

A backend is one subclass of :class:`RunStore`. Its operations are coarse on purpose (one per contract
operation), so that each can be one transaction, one script or one Durable Object call. The contract
suite in :mod:`flue_core.testing` checks every rule written here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flue_core.flow.limits import Limits, Taken  # part of the contract: a backend imports them from here
from flue_core.models import Event, RunError, RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp
from flue_core.snapshot import dumps

ChangeListener = Callable[[Iterable[str]], None]
"""Called by a store, on the event loop, with the ids of runs whose stream or record changed."""

READY = ":ready"
"""Not a run id: stores include it among the ids they pass to their change listener when a run may
have entered the ready pool or a wake-up time was set, so idle workers look again (see
:meth:`RunStore.take_ready`). Run ids cannot contain ``:``."""

SCHEDULES = ":schedules"
"""Not a run id either: passed to the change listener when a schedule was stored or deleted."""

ANY_RUN = ":any"
"""Not a run id either: any run may have changed. A store that cannot tell which (SQLite hearing of
another process's commit) passes it, and every waiting reader looks again."""

CANCELS = ":cancels"
"""Not a run id either: passed to the change listener when a run was asked to cancel, so that the
process executing it, wherever it is, stops it at once instead of at its next heartbeat."""

EVERYTHING = (ANY_RUN, READY, SCHEDULES, CANCELS)
"""What a store passes to its change listener when it may have missed changes (its feed of other
processes' writes was cut off and is back): every reader, worker and scheduler looks again."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store at position ``index`` of its run's stream."""

    index: int
    type: str
    data: dict[str, Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run as admission persists it: record, stream and ``first_event``.

    ``owner`` is the worker that will execute it, or ``None`` to put it in the ready pool any worker
    takes from (:meth:`RunStore.take_ready`). With ``start_at`` later than ``created_at`` the run is
    ``scheduled`` (``waiting_for`` kind ``start``, ``wake_at`` = ``start_at``) instead of ``queued``.
    ``parent_run_id`` names the run that started it as a child; ``carrier`` is stored as given.
    ``rerun_of`` names the finished run this one re-runs, and ``steps`` (name, JSON text) are step
    results taken over from it: :meth:`RunStore.admit` stores them as the new run's own, in this
    order, in the same unit as the record. ``priority``, ``concurrency_key``, ``rate_key`` and
    ``debounce_key`` are stored as given (see :class:`~flue_core.flow.limits.Limits` and
    :meth:`RunStore.admit`); a run with a ``debounce_key`` is always admitted ``scheduled``.
    """

    run_id: str
    workflow: str
    input: Any
    key: str | None
    created_at: datetime
    owner: str | None
    first_event: NewEvent
    parent_run_id: str | None = None
    start_at: datetime | None = None
    carrier: dict[str, str] | None = None
    rerun_of: str | None = None
    steps: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    concurrency_key: str | None = None
    rate_key: str | None = None
    debounce_key: str | None = None

    @property
    def scheduled(self) -> bool:
        return self.start_at is not None and self.start_at > self.created_at

    def record(self) -> RunRecord:
        """The record :meth:`RunStore.admit` stores for this run (built from values admission
        validated, every field given: not validated again)."""
        scheduled = self.scheduled
        return RunRecord.trusted(
            run_id=self.run_id,
            workflow=self.workflow,
            status=RunStatus.SCHEDULED if scheduled else RunStatus.QUEUED,
            input=self.input,
            key=self.key,
            attempt=0,
            created_at=self.created_at,
            started_at=None,
            ended_at=None,
            result=None,
            error=None,
            cancel_requested=False,
            parent_run_id=self.parent_run_id,
            wake_at=self.start_at if scheduled else None,
            waiting_for=WaitingFor(kind="debounce" if self.debounce_key is not None else "start") if scheduled else None,
            carrier=self.carrier,
            recoveries=0,
            rerun_of=self.rerun_of,
            priority=self.priority,
            concurrency_key=self.concurrency_key,
            rate_key=self.rate_key,
            debounce_key=self.debounce_key,
            queued_for=None,
        )


@dataclass(frozen=True, slots=True)
class Admission:
    record: RunRecord
    created: bool  # False: the workflow's key was already bound to ``record``


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended; written once by :meth:`RunStore.finish`."""

    status: RunStatus
    ended_at: datetime
    result: Any = None
    error: RunError | None = None

    def event_data(self, started_at: datetime | None) -> dict[str, Any]:
        """The ``data`` of the ``run_end`` event every store writes for this outcome."""
        duration = None if started_at is None else int((self.ended_at - started_at).total_seconds() * 1000)
        return {
            "status": self.status.value,
            "result": self.result,
            "error": None if self.error is None else self.error.model_dump(exclude_none=True),
            "durationMs": duration,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """A claimed execution: the running record and the index its next event takes.

    ``resumed`` is true when the run was woken from a wait (a sleep, a signal, children) or handed
    back after an interruption (:meth:`RunStore.requeue` with ``interrupted``): the same attempt
    continues, so ``record.attempt`` did not grow.
    """

    record: RunRecord
    next_index: int
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Suspension:
    """Where a running run goes to wait: ``waiting_for`` (never kind ``start``), due at ``wake_at``
    (``None``: only a signal or its children wake it)."""

    waiting_for: WaitingFor
    wake_at: datetime | None

    def event_data(self) -> dict[str, Any]:
        """The ``data`` of the ``run_waiting`` event every store writes for this suspension."""
        return {
            "for": self.waiting_for.model_dump(mode="json", exclude_none=True),
            "until": None if self.wake_at is None else format_timestamp(self.wake_at),
        }


@dataclass(frozen=True, slots=True)
class Suspended:
    """The answer of :meth:`RunStore.suspend`.

    ``suspended`` false means the run keeps running: what it would wait for is already there (a
    signal of that name is undelivered, every child has ended) or a cancel was requested. In both
    cases the executor continues its attempt with events from ``next_index``. ``record`` is the run
    as it now is.
    """

    suspended: bool
    next_index: int
    record: RunRecord


@dataclass(frozen=True, slots=True)
class NewSignal:
    """A signal sent into a run: ``data`` is a JSON snapshot, ``key`` makes sending idempotent."""

    signal_id: str
    name: str
    data: Any
    key: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class SignalSent:
    """The answer of :meth:`RunStore.send_signal`: ``created`` false when ``key`` was already used
    for this run (``signal_id`` is then the first signal's id, and nothing was written)."""

    signal_id: str
    created: bool
    record: RunRecord
    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class Delivery:
    """The answer of :meth:`RunStore.take_signal`: the signal delivered (``None``: none waiting)
    and the index the run's next event takes."""

    signal: SignalSent | None
    next_index: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: its index and its JSON text (what the HTTP surface sends as-is)."""

    index: int
    json: str

    def parse(self) -> Event:
        return Event.model_validate_json(self.json)


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events strictly after the requested index, in order.

    ``tail`` is the index of the stream's last event when the page was read (``-1``: none yet), so the
    reader is up to date when it has seen ``tail``. ``closed`` is true once ``run_end`` is stored.
    """

    events: list[StoredEvent]
    tail: int
    closed: bool

    @property
    def last_index(self) -> int | None:
        return self.events[-1].index if self.events else None


@dataclass(frozen=True, slots=True)
class RunQuery:
    """A page request of ``list``: newest first by (``created_at``, ``run_id``), strictly after
    ``after``; ``parent`` keeps the children of that run only, ``rerun_of`` the runs that re-run
    that run; ``concurrency_key`` and ``rate_key`` the runs with that key value;
    ``started_after`` the runs whose ``started_at`` is later than that."""

    workflow: str | None = None
    status: RunStatus | None = None
    limit: int = 50
    after: tuple[datetime, str] | None = None
    parent: str | None = None
    rerun_of: str | None = None
    concurrency_key: str | None = None
    rate_key: str | None = None
    started_after: datetime | None = None


@dataclass(slots=True)
class WorkerInfo:
    """A process executing runs. ``heartbeat_at`` is seconds since the epoch (wall clock)."""

    worker_id: str
    host: str
    pid: int
    pid_started: str | None
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store promises; the contract suite selects its tests by these, never by name."""

    durable: bool = False  # data survives the process (a restart can recover runs)
    shared: bool = False  # several processes may use the same data at once
    #: Changes made by other processes reach this process's change listener promptly (for the keys
    #: it watches, see :meth:`RunStore.interest`), so waiting readers need not re-read on a timer.
    feed: bool = False
    # admit_claimed is one unit (one transaction), not admit() then claim(): a target may then have the
    # runs it executes at once claimed at admission, saving a write per run.
    claims_on_admit: bool = False


def signal_received_data(signal: SignalSent, key: str | None, sent_at: datetime) -> dict[str, Any]:
    """The ``data`` of the ``signal_received`` event every store writes for a signal."""
    return {
        "signalId": signal.signal_id,
        "name": signal.name,
        "key": key,
        "data": signal.data,
        "sentAt": format_timestamp(sent_at),
    }


def delivered_step_value(signal: SignalSent, sent_at: datetime) -> dict[str, Any]:
    """What :meth:`RunStore.take_signal` stores as the result of the wait's step."""
    return {"signalId": signal.signal_id, "name": signal.name, "data": signal.data, "sentAt": format_timestamp(sent_at)}


def event_json(run_id: str, event: NewEvent) -> str:
    """The stored JSON text of an event; the single place that fixes the wire shape."""
    return dumps(
        {
            "runId": run_id,
            "index": event.index,
            "timestamp": format_timestamp(event.timestamp),
            "type": event.type,
            "data": event.data,
        }
    )


class RunStore(ABC):
    """Runs, their event streams, step results, signal mailboxes, schedules, and the workers.

    Rules every implementation keeps:

    * **Atomic admission.** :meth:`admit` writes the record, creates the stream and stores the first
      event as one unit (with the run's place in the ready pool or the due-time index, and its
      idempotency key): after a crash either all exist or none does.
    * **Ordered streams.** A run's events are stored in the order they were written, each at its
      index (its stream position, from 0 without gaps). While a run is ``running``, the process that
      claimed it assigns the indexes of the events it :meth:`append` writes; an event whose index is
      taken is dropped. The store itself writes events at the stream's end only in operations that
      return the next free index to that process (:meth:`claim`, :meth:`suspend`,
      :meth:`take_signal`) or that end its hold (:meth:`finish`), or while nobody holds the run
      (:meth:`send_signal` to a run that is not running); such an operation first stores every event
      appended before it.
    * **First terminal write wins.** :meth:`finish` ends a run once: it stores ``run_end`` as the
      stream's last event, closes the stream and makes the record final. Later finishes and appends to
      a closed stream change nothing.
    * **One mechanism for waiting.** A ``scheduled`` or ``waiting`` run is held by nobody: it has a
      ``wake_at`` (or none, while it waits only for a signal or children) in a due-time index.
      :meth:`wake_due`, :meth:`send_signal` and the :meth:`finish` of its last awaited child move it
      to the *ready pool* (``queued``, no owner), from which any worker takes it with
      :meth:`take_ready`. A run woken once is in the pool once: it never wakes twice for one wait.
    * **Signals** are kept in a per-run mailbox in the order received, each announced by exactly one
      ``signal_received`` event and delivered at most once, by :meth:`take_signal`.
    * **Change notification.** After data is durable, the store calls the listener given to
      :meth:`open` with the ids of runs whose stream or record changed, so waiting readers wake, and
      with :data:`READY` when a run may have entered the ready pool or a wake-up time was set (and
      :data:`SCHEDULES`, :data:`CANCELS` likewise). A ``shared`` store also tells the listeners of
      other processes, as promptly as it can.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    async def open(self, on_change: ChangeListener) -> None:
        """Connect, create or check the schema (raising :class:`UnsupportedSchemaVersion` for data
        written by an incompatible version), and remember ``on_change``."""

    @abstractmethod
    async def close(self) -> None:
        """Make enqueued appends durable, then release connections. Idempotent."""

    def interest(self, key: str, watched: bool) -> None:
        """Told, on the event loop, when this process starts (``watched``) or stops watching ``key``:
        a run id, or :data:`READY`, :data:`SCHEDULES` or :data:`CANCELS`.

        A store that subscribes to other processes' changes per key subscribes here, so a process
        hears only of what it watches; once the subscription is in place it passes ``key`` to its
        change listener (readers look again, so nothing changed meanwhile is missed). The default
        does nothing: the store's feed carries every change. Never raises, never waits.
        """

    # -- admission and lifecycle --------------------------------------------------------------------

    @abstractmethod
    async def admit(self, run: NewRun) -> Admission:
        """Persist a new run atomically (record, stream, ``first_event`` at index 0, the step results
        of ``run.steps``): ``queued`` for
        ``run.owner`` (``None``: in the ready pool), or ``scheduled`` until ``run.start_at``.

        When ``run.key`` is set and a run of the same workflow already holds that key, nothing is
        written and the existing record is returned with ``created=False`` — also when both calls race.
        A run with the same id (and no such key) raises :class:`~flue_core.errors.RunIdConflict`.

        **Debounce.** When ``run.debounce_key`` is set (and ``run.key`` names no run) and a run of the
        same workflow with that ``debounce_key`` is still ``scheduled`` waiting for kind ``debounce``
        and not asked to cancel, no run is created: that run takes ``run.input`` as its input,
        ``run.start_at`` as its ``wake_at`` (its due-time index moves with it) and ``run.priority``,
        ``run.concurrency_key`` and ``run.rate_key`` as its own (they follow the input: its indexes
        move with them), a ``run_debounced`` event (data:
        ``{"input": run.input, "startAt": <run.start_at>}``) is stored at its stream's end, and it is
        returned with ``created=False``. Two such admissions that race fold into one run: there is
        never more than one pending debounce run per workflow and ``debounce_key`` that is not asked
        to cancel. ``run.key`` is not bound when a start folds. Once the run is woken (ready pool),
        later starts create a new run.
        """

    async def admit_claimed(self, run: NewRun) -> tuple[Admission, Attempt | None]:
        """:meth:`admit`, then, when that created the run and ``run`` has an ``owner`` and is not
        ``scheduled``, :meth:`claim` of it for ``run.owner`` (no ``limit``): the run's execution begins
        with its admission. ``Admission.record`` is the run as admitted (``queued``), the attempt as
        :meth:`claim` returns it (``None`` when nothing was claimed).

        The default makes the two calls. A store that makes them one unit, so that no other operation
        comes between them and one write (one commit) does both, overrides this and declares
        ``Capabilities.claims_on_admit``.
        """
        admission = await self.admit(run)
        if not admission.created or run.owner is None or run.scheduled:
            return admission, None
        return admission, await self.claim(run.run_id, run.owner)

    @abstractmethod
    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        """Start executing a ``queued`` run owned by ``owner``: it becomes ``running`` and
        ``started_at`` is set if unset. ``attempt`` grows by one, unless the run was woken from a wait
        that continues its attempt (``Attempt.resumed``). Signals received while it was not running
        are announced already; returns the record and the index the next event takes.

        ``None`` if the run is not queued for ``owner``. With ``limit``, a run whose workflow already
        has ``limit`` runs ``running`` with the run's ``concurrency_key`` (runs without a key count
        together) is not claimed but put back in the ready pool (``None``).
        """

    @abstractmethod
    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        """Hand a ``running`` run back: it becomes ``queued`` for ``owner`` (``None``: the ready pool,
        and listeners hear :data:`READY`). With ``held_by``, only while the run is owned by that
        worker. The next claim starts a new attempt; with ``interrupted`` (its execution was cut
        short by a crash, a stop, a lost lease or a lost store: nothing in the workflow failed)
        ``recoveries`` grows by one instead and the next claim continues the same attempt
        (``Attempt.resumed``, ``attempt`` unchanged). ``None`` if nothing changed."""

    @abstractmethod
    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        """Park a ``running`` run owned by ``owner``: it becomes ``waiting`` for
        ``suspension.waiting_for``, due at ``suspension.wake_at``, owned by nobody; a
        ``run_waiting`` event (data: :meth:`Suspension.event_data`) is stored after every event appended before this call and after the announcements of
        signals received meanwhile.

        The run is not parked (``suspended=False``, it stays running) when it waits for a signal
        name that has an undelivered signal, for children that have all ended, or has been asked to
        cancel. ``None`` when the run is not running for ``owner`` (it was lost to an adopter).
        """

    @abstractmethod
    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        """End a run with ``outcome`` unless it has ended already (first terminal write wins).

        Stores the announcements of signals not yet announced, then ``run_end`` (data:
        :meth:`Outcome.event_data`) at the index after the last stored event, once every event
        appended before this call is stored; closes the stream and sets status, ``ended_at``,
        ``result`` and ``error``, and clears ``wake_at``. With ``only_from``, only a run currently in
        one of those statuses is ended; with ``held_by``, only a run owned by that worker (a worker
        that lost a run to an adopter cannot end it). When the run is a child whose parent waits for
        its children, the parent is woken (ready pool). Returns the record as it now is, or ``None``
        for an unknown run.
        """

    @abstractmethod
    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Mark an unfinished run as cancel-requested; return the record (``None``: unknown run).
        Listeners hear :data:`CANCELS`."""

    # -- the ready pool and the due-time index ------------------------------------------------------

    @abstractmethod
    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        """Give ``owner`` up to ``limit`` runs of the ready pool (``queued``, no owner) of the
        workflows named in ``workflows``: highest ``priority`` first, then oldest by the time each
        became ready (admission time, or the ``wake_at`` it was woken for), then by id; with
        ``only``, just runs of those ids. The taken records (still ``queued``, now owned by
        ``owner``) are ``Taken.records``. Atomic per run: two workers never take one run.

        A workflow's :class:`~flue_core.flow.limits.Limits` hold across every process on the store:

        * ``concurrency`` ``n``: a run is taken only while fewer than ``n`` runs of its workflow with
          its ``concurrency_key`` (runs without a key count together) are ``running`` or ``queued``
          for a worker, those taken by this call included.
        * ``rate`` ``n`` ``per`` ``p`` seconds: a run that never started (``started_at`` unset) is
          taken only while fewer than ``n`` runs of its workflow with its ``rate_key`` started in the
          last ``p`` seconds (``started_at``) or were taken and have not started yet, those taken by
          this call included. When runs were left for this reason, ``Taken.retry_at`` is no later
          than the time one of their buckets has room again.

        A run held back by a limit never holds back the runs after it that its limits do not hold
        (no head-of-line blocking): those are taken in its place."""

    @abstractmethod
    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        """Move up to ``limit`` ``scheduled`` and ``waiting`` runs whose ``wake_at`` is at or before
        ``now`` to the ready pool (oldest ``wake_at`` first); return how many moved. Listeners hear
        :data:`READY` when any did."""

    @abstractmethod
    async def next_wake(self) -> datetime | None:
        """The earliest ``wake_at`` of a ``scheduled`` or ``waiting`` run, or ``None``."""

    # -- events -------------------------------------------------------------------------------------

    @abstractmethod
    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        """Enqueue events for the run's stream without waiting; they are stored in call order.

        Never raises: events for a closed or unknown stream, or whose index is not the next free
        position of the stream (taken, or past a gap), are dropped. :meth:`flush` waits until
        everything enqueued before it is durable.
        """

    @abstractmethod
    async def flush(self) -> None:
        """Return once every event enqueued by :meth:`append` before this call is durable."""

    @abstractmethod
    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        """Up to ``limit`` events with index greater than ``after`` (``-1``: from the start; ``None``:
        from the current tail, so no events). ``None`` for an unknown run."""

    # -- records ------------------------------------------------------------------------------------

    @abstractmethod
    async def get(self, run_id: str) -> RunRecord | None:
        """The run's record, or ``None``."""

    @abstractmethod
    async def list(self, query: RunQuery) -> list[RunRecord]:
        """At most ``query.limit`` records matching the filters (``workflow``, ``status``, ``parent``,
        ``rerun_of``), newest first, after the cursor."""

    async def count_runs(
        self, workflows: Collection[str], statuses: Collection[RunStatus], limit: int
    ) -> dict[tuple[str, RunStatus], int]:
        """How many runs of ``workflows`` have each of ``statuses``, by ``(workflow, status)``; pairs
        with none may be left out. A store may stop counting a status at ``limit`` runs. Counting
        must not hold the event loop for long (queue depth is counted while runs execute): the
        default pages through :meth:`list`, yielding between pages (:mod:`flue_core.counting`); stores
        with a count of their own override it."""
        from flue_core.counting import count_by_listing  # a room of its own; store.py is long enough

        return await count_by_listing(self, workflows, statuses, limit)

    @abstractmethod
    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` runs that ended before ``ended_before`` — record, stream, steps,
        mailbox and idempotency key — and return how many. Unfinished runs are never deleted, nor is
        a run whose parent (``parent_run_id``) exists and has not ended, for the parent may still
        wait for its result: it is deleted by a call after its parent has ended. Such children do
        not count against ``limit``, so fewer than ``limit`` deleted means none is left to delete."""

    # -- steps --------------------------------------------------------------------------------------

    @abstractmethod
    async def save_step(self, run_id: str, name: str, value: str) -> None:
        """Durably store a completed step's JSON result; a second save of the same name keeps the first."""

    @abstractmethod
    async def load_steps(self, run_id: str) -> dict[str, str]:
        """Every stored step result of the run, by name, in the order they were first saved (the
        steps :meth:`admit` took over first)."""

    # -- signals ------------------------------------------------------------------------------------

    @abstractmethod
    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        """Put ``signal`` in the run's mailbox.

        When ``signal.key`` was used for this run already, nothing is written and the first signal is
        returned (``created`` false) — also when the run has ended since, so a retried send gets the
        same answer. Otherwise raises :class:`~flue_core.errors.RunNotFound` for an unknown run and
        :class:`~flue_core.errors.RunFinished` for one that has ended. Otherwise the signal is stored; when the run is not running its
        ``signal_received`` event (data: :func:`signal_received_data`) is stored at the
        stream's end at once (else by the next operation that writes there, see the class rules);
        and when the run is ``waiting`` for a signal of that name it is woken (ready pool).
        """

    @abstractmethod
    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        """Deliver to a ``running`` run owned by ``owner`` the oldest undelivered signal called
        ``name`` (with ``sent_by``, only one sent at or before then: a wait's deadline, so that a wait
        whose time ran out takes no signal sent after it, however late its executor looks):
        mark it delivered, store :func:`delivered_step_value` as the result of ``step``, and store a
        ``signal_delivered`` event (``{"signalId", "name"}``) after the announcements of signals
        received meanwhile. ``Delivery.signal`` is ``None`` when there is no such signal (only the
        announcements are written). ``None`` when the run is not running for ``owner``."""

    # -- schedules ----------------------------------------------------------------------------------

    @abstractmethod
    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        """Store ``schedule`` under its name, returning the stored schedule and whether it was created.

        When the name is taken: with ``replace`` the definition is replaced, keeping the existing
        ``created_at`` and ``last_tick`` (which only :meth:`advance_schedule` moves); without, nothing
        changes. Listeners hear :data:`SCHEDULES`.
        """

    @abstractmethod
    async def get_schedule(self, name: str) -> Schedule | None:
        """The schedule called ``name``, or ``None``."""

    @abstractmethod
    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""

    @abstractmethod
    async def delete_schedule(self, name: str) -> bool:
        """Remove the schedule; ``False`` if there was none. Runs it started are kept. Listeners
        hear :data:`SCHEDULES`."""

    @abstractmethod
    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        """Set the schedule's ``last_tick`` to ``tick`` if it is still ``previous`` (compare and set,
        so that of several processes handling one tick exactly one advances it); ``False`` otherwise."""

    # -- workers ------------------------------------------------------------------------------------

    @abstractmethod
    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        """Record that ``worker`` is alive (insert or update). Return those of the ``running`` runs it
        must stop: asked to cancel (by any process), or no longer owned by it (adopted by another
        worker that judged this one dead, or ended)."""

    @abstractmethod
    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker."""

    @abstractmethod
    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        """Forget the ``dead`` workers, then give ``owner`` every ``queued`` or ``running`` run of
        ``workflows`` owned by a worker that is not registered (dead or retired; runs with no owner
        are in the ready pool and stay there). Returns the adopted records (status unchanged) so the
        caller can resume or fail them. Atomic per run: two adopters never both get one run."""

    @abstractmethod
    async def retire(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""

"""The storage contract every backend implements: run records, event streams, steps and workers.

A backend is one subclass of :class:`RunStore`. Its operations are coarse on purpose (one per contract
operation), so that each can be one transaction, one script or one Durable Object call. The contract
suite in :mod:`flue_core.testing` checks every rule written here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flue_core.models import Event, RunError, RunRecord, RunStatus, format_timestamp
from flue_core.snapshot import dumps

ChangeListener = Callable[[Iterable[str]], None]
"""Called by a store, on the event loop, with the ids of runs whose stream or record changed."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store at position ``index`` of its run's stream."""

    index: int
    type: str
    data: dict[str, Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run as admission persists it: record (status ``queued``), stream and ``first_event``."""

    run_id: str
    workflow: str
    input: Any
    key: str | None
    created_at: datetime
    owner: str | None
    first_event: NewEvent


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
    """A claimed attempt: the running record and the index its next event takes."""

    record: RunRecord
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
    """A page request of ``list``: newest first by (``created_at``, ``run_id``), strictly after ``after``."""

    workflow: str | None = None
    status: RunStatus | None = None
    limit: int = 50
    after: tuple[datetime, str] | None = None


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
    """Runs, their event streams, their step results, and the workers executing them.

    Rules every implementation keeps:

    * **Atomic admission.** :meth:`admit` writes the record, creates the stream and stores the first
      event as one unit: after a crash either all three exist or none does.
    * **Ordered streams.** A run's events are stored in the order :meth:`append` and :meth:`finish`
      were called, each at the index it carries (its stream position, from 0 without gaps). The
      process that claimed a run assigns the indexes of its events; an event whose index is taken
      is dropped.
    * **First terminal write wins.** :meth:`finish` ends a run once: it stores ``run_end`` as the
      stream's last event, closes the stream and makes the record final. Later finishes and appends to
      a closed stream change nothing.
    * **Change notification.** After data is durable, the store calls the listener given to
      :meth:`open` with the ids of runs whose stream or record changed, so waiting readers wake.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    async def open(self, on_change: ChangeListener) -> None:
        """Connect, create or check the schema (raising :class:`UnsupportedSchemaVersion` for data
        written by an incompatible version), and remember ``on_change``."""

    @abstractmethod
    async def close(self) -> None:
        """Make enqueued appends durable, then release connections. Idempotent."""

    # -- admission and lifecycle --------------------------------------------------------------------

    @abstractmethod
    async def admit(self, run: NewRun) -> Admission:
        """Persist a new ``queued`` run atomically (record, stream, ``first_event`` at index 0).

        When ``run.key`` is set and a run of the same workflow already holds that key, nothing is
        written and the existing record is returned with ``created=False`` — also when both calls race.
        A run with the same id (and no such key) raises :class:`~flue_core.errors.RunIdConflict`.
        """

    @abstractmethod
    async def claim(self, run_id: str, owner: str) -> Attempt | None:
        """Start an attempt: a ``queued`` run owned by ``owner`` becomes ``running``, ``attempt`` grows
        by one and ``started_at`` is set if unset. Returns the record and the index the next event
        takes; ``None`` if the run is not queued for ``owner``."""

    @abstractmethod
    async def requeue(self, run_id: str, owner: str | None, *, held_by: str | None = None) -> RunRecord | None:
        """Hand a ``running`` run back: it becomes ``queued`` for ``owner`` (``None``: any worker).
        With ``held_by``, only while the run is owned by that worker. ``None`` if nothing changed."""

    @abstractmethod
    async def finish(
        self, run_id: str, outcome: Outcome, *, only_from: RunStatus | None = None, held_by: str | None = None
    ) -> RunRecord | None:
        """End a run with ``outcome`` unless it has ended already (first terminal write wins).

        Stores ``run_end`` (data: :meth:`Outcome.event_data`) at the index after the last stored event,
        once every event appended before this call is stored; closes the stream and sets status,
        ``ended_at``, ``result`` and ``error``. With ``only_from``, only a run currently in that status
        is ended; with ``held_by``, only a run owned by that worker (a worker that lost a run to an
        adopter cannot end it). Returns the record as it now is, or ``None`` for an unknown run.
        """

    @abstractmethod
    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Mark an unfinished run as cancel-requested; return the record (``None``: unknown run)."""

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
        """At most ``query.limit`` records matching the filters, newest first, after the cursor."""

    # -- steps --------------------------------------------------------------------------------------

    @abstractmethod
    async def save_step(self, run_id: str, name: str, value: str) -> None:
        """Durably store a completed step's JSON result; a second save of the same name keeps the first."""

    @abstractmethod
    async def load_steps(self, run_id: str) -> dict[str, str]:
        """Every stored step result of the run, by name."""

    # -- workers ------------------------------------------------------------------------------------

    @abstractmethod
    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        """Record that ``worker`` is alive (insert or update). Return those of the ``running`` runs it
        must stop: asked to cancel (by any process), or no longer owned by it (adopted by another
        worker that judged this one dead)."""

    @abstractmethod
    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker."""

    @abstractmethod
    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        """Forget the ``dead`` workers, then give ``owner`` every unfinished run of ``workflows`` whose
        owner is not a registered worker (dead, retired or none). Returns the adopted records (status
        unchanged) so the caller can resume or fail them. Atomic per run: two adopters never both get
        one run."""

    @abstractmethod
    async def retire(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""

"""The records users see: runs, receipts, events and pages. JSON field names are camelCase."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel

from flue_core.offsets import format_offset


def utc_now() -> datetime:
    """Now, in UTC, truncated to the millisecond (the resolution records and cursors keep)."""
    # One datetime, not two (now, then replace): a float of milliseconds / 1000 is within a
    # quarter microsecond of the exact time (until past 2200), which fromtimestamp rounds to.
    return datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 with milliseconds and a ``Z``: sorts lexically in time order."""
    global _last_second
    offset = value.utcoffset()
    if offset:
        value = value.astimezone(UTC)
    # A run formats several times of the same second: isoformat() (a printf in C) once per second.
    second = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    last = _last_second
    if last[0] != second:
        last = _last_second = (second, value.replace(microsecond=0, tzinfo=None).isoformat())
    return last[1] + _MILLISECONDS[value.microsecond // 1000]


#: The second last formatted and its text (one tuple, replaced whole: threads may share it).
_last_second: tuple[tuple[int, ...] | None, str] = (None, "")
_MILLISECONDS = [f".{n:03d}Z" for n in range(1000)]


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )

    @classmethod
    def trusted(cls, **fields: Any) -> Self:
        """An instance of values already valid, every field given by name (what a store builds from
        rows it wrote itself, on hot paths): what ``model_construct`` builds, without its per-field
        alias and default lookups (a sixth of the cost for a record). Anything but exactly every field
        goes to ``model_construct``."""
        if fields.keys() != cls.__pydantic_fields__.keys():
            return cls.model_construct(**fields)
        model = cls.__new__(cls)
        _set(model, "__dict__", fields)
        _set(model, "__pydantic_fields_set__", set(fields))
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


_set = object.__setattr__  # frozen models refuse setattr; pydantic's model_construct sets these likewise



class RunStatus(StrEnum):
    """``[scheduled →] queued → running [⇄ waiting] → completed | failed | cancelled``.

    ``scheduled``: admitted with a later start time. ``waiting``: suspended in the store (a durable
    sleep, a signal, child runs, a retry's back-off); no process holds it until it is due again.
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
#: Statuses by value: a dict lookup, where ``RunStatus(value)`` goes through the enum machinery.
STATUSES = {status.value: status for status in RunStatus}
#: Statuses of a run that has not ended, in the order of a run's life.
UNFINISHED = (RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)

WaitKind = Literal["start", "sleep", "signal", "children", "retry", "debounce"]


class WaitingFor(_Model):
    """What a ``scheduled`` or ``waiting`` run waits for (besides ``RunRecord.wake_at``, when it is due
    anyway): its ``start`` time, the end of a ``sleep``, a ``signal`` called ``name`` (``wake_at``: its
    timeout), the end of ``children`` (all of ``run_ids``), a ``retry`` after a failed attempt, or the
    end of its ``debounce`` window (a later start with the same debounce key moves ``wake_at``)."""

    kind: WaitKind
    name: str | None = None
    run_ids: list[str] | None = None


QueueKind = Literal["worker", "slot", "rate_limit", "debounce"]


class QueuedFor(_Model):
    """What a run that has not started yet waits for, as the runtime tells it when the run is read
    (``runs.get``, ``runs.list``, ``GET /runs/...``): a free ``worker`` slot (any process executing
    the workflow), a ``slot`` of the workflow's ``concurrency`` (of ``key``, with a
    ``concurrency_key``: ``running`` of ``limit`` in use), its ``rate_limit`` (of ``key``) until
    ``until``, or the end of its ``debounce`` window at ``until``. ``message`` says it in words."""

    kind: QueueKind
    message: str
    key: str | None = None
    until: datetime | None = None
    running: int | None = None
    limit: int | None = None

    @field_serializer("until")
    def _timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)


class RunError(_Model):
    """Why a run failed. ``code`` is stable: ``workflow_error``, ``run_interrupted`` (interrupted with
    ``max_recoveries=0`` and no retry left), ``recovery_limit`` (interrupted more than its workflow's
    ``max_recoveries`` times), ``run_timeout``, ``scheduling_failed``, ``output_not_json``,
    ``invalid_input``."""

    code: str
    message: str
    type: str | None = None
    traceback: str | None = None


class RunRecord(_Model):
    """The persisted state of one run.

    ``parent_run_id`` names the run that started this one as a child; ``rerun_of`` the finished run
    this one re-runs (``runs.rerun``). ``attempt`` counts executions begun after a failure (retries);
    ``recoveries`` counts interruptions (a process that died or stopped, a lost lease, a lost store)
    after which the same attempt resumed. ``wake_at`` and ``waiting_for`` are set while the run is
    ``scheduled`` or ``waiting``. ``priority`` orders the ready runs competing for a slot (higher
    first); ``concurrency_key``, ``rate_key`` and ``debounce_key`` are the values of the workflow's
    flow-control keys for this run's input (see :mod:`flue_core.flow`); ``queued_for`` says what a
    run that has not started waits for (filled in by the runtime when the run is read, never
    stored). ``carrier`` holds the context propagated
    from the admitting caller to every process that executes the run (W3C trace context, say), as
    plugins captured it at admission (``flue_capture_carrier``).
    """

    run_id: str
    workflow: str
    status: RunStatus
    input: Any = None
    key: str | None = None
    attempt: int = 0
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    result: Any = None
    error: RunError | None = None
    cancel_requested: bool = False
    parent_run_id: str | None = None
    wake_at: datetime | None = None
    waiting_for: WaitingFor | None = None
    carrier: dict[str, str] | None = None
    recoveries: int = 0
    rerun_of: str | None = None
    priority: int = 0
    concurrency_key: str | None = None
    rate_key: str | None = None
    debounce_key: str | None = None
    queued_for: QueuedFor | None = None

    @field_serializer("created_at", "started_at", "ended_at", "wake_at")
    def _timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def duration_ms(self) -> int | None:
        """Execution time (all attempts), or ``None`` if the run never started or is still going."""
        if self.started_at is None or self.ended_at is None:
            return None
        return int((self.ended_at - self.started_at).total_seconds() * 1000)


class RunReceipt(_Model):
    """What admission returns: the run exists, is persisted and scheduled; it has not finished."""

    run_id: str
    workflow: str
    stream_url: str
    offset: str = "-1"


class SignalReceipt(_Model):
    """What ``runs.signal`` returns: the signal is in the run's mailbox. ``duplicate``: its key was
    used before, and this is the first signal sent with it (nothing new was stored)."""

    signal_id: str
    run_id: str
    name: str
    duplicate: bool = False


class Event(_Model):
    """One entry of a run's event stream. ``index`` is the entry's position in the stream."""

    run_id: str
    index: int
    timestamp: datetime
    type: str
    data: dict[str, Any] = {}

    @field_serializer("timestamp")
    def _timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    @property
    def offset(self) -> str:
        """The stream offset of this event: reading from it resumes strictly after it."""
        return format_offset(self.index)


class Schedule(_Model):
    """A cron schedule: each tick admits a run of ``workflow`` with ``input``.

    ``cron`` is a five-field expression (``*/5 * * * *``) read in ``timezone`` (an IANA name).
    ``last_tick`` is the latest tick handled (admitted, or skipped as missed); the ticks after it are
    due. After downtime, at most ``catchup`` missed ticks run (the most recent ones, oldest first);
    a tick is missed when it is more than a minute old when it is handled. ``declared`` schedules come
    from ``@workflow(schedule=...)`` and are kept in step with the code at start-up.
    """

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    input: Any = None
    paused: bool = False
    catchup: int = 1
    declared: bool = False
    created_at: datetime
    updated_at: datetime
    last_tick: datetime | None = None

    @field_serializer("created_at", "updated_at", "last_tick")
    def _timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)


class RunPage(_Model):
    """One page of ``runs.list``; pass ``next_cursor`` back for the next page (``None``: no more)."""

    runs: list[RunRecord]
    next_cursor: str | None = None

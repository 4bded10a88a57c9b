"""The records users see: runs, receipts, events and pages. JSON field names are camelCase."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer
from pydantic.alias_generators import to_camel

from flue_core.offsets import format_offset


def utc_now() -> datetime:
    """Now, in UTC, truncated to the millisecond (the resolution records and cursors keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 with milliseconds and a ``Z``: sorts lexically in time order."""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class RunStatus(StrEnum):
    """``queued → running → completed | failed | cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunError(_Model):
    """Why a run failed. ``code`` is stable: ``workflow_error``, ``run_interrupted``, ``run_timeout``,
    ``scheduling_failed``, ``output_not_json``, ``invalid_input``."""

    code: str
    message: str
    type: str | None = None
    traceback: str | None = None


class RunRecord(_Model):
    """The persisted state of one run."""

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

    @field_serializer("created_at", "started_at", "ended_at")
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


class RunPage(_Model):
    """One page of ``runs.list``; pass ``next_cursor`` back for the next page (``None``: no more)."""

    runs: list[RunRecord]
    next_cursor: str | None = None

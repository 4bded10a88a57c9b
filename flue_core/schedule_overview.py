"""What a schedule looks like from outside: its definition, the times it ticks at next, and the runs it
started (``schedules.overview``, ``GET /schedules/{name}``, ``flue schedules show``, the dashboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import SerializerFunctionWrapHandler, field_serializer, model_serializer

from flue_core.models import RunRecord, RunStatus, Schedule, _Model, format_timestamp


class ScheduledRun(_Model):
    """A run a schedule started, as a schedule's overview lists it: which run, how it stands, the tick
    it was admitted for. Its input and result are not here: they are the run's, read where reading the
    run is granted (``runs.get``, ``GET /runs/{run_id}?meta``)."""

    run_id: str
    status: RunStatus
    tick: datetime | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @field_serializer("tick", "created_at", "started_at", "ended_at")
    def _timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)

    @classmethod
    def of(cls, record: RunRecord, tick: datetime | None) -> ScheduledRun:
        return cls(
            run_id=record.run_id,
            status=record.status,
            tick=tick,
            created_at=record.created_at,
            started_at=record.started_at,
            ended_at=record.ended_at,
        )


class ScheduleOverview(Schedule):
    """A :class:`Schedule` with ``next_ticks``, the next times it ticks at (UTC, soonest first; a paused
    schedule's are the times it would tick at, and ``paused`` says it does not), and ``last_runs``,
    the runs it started, newest first (``None`` when they were not asked for)."""

    next_ticks: list[datetime] = []
    last_runs: list[ScheduledRun] | None = None

    @field_serializer("next_ticks")
    def _ticks(self, value: list[datetime]) -> list[str]:
        return [format_timestamp(tick) for tick in value]

    @model_serializer(mode="wrap")
    def _unasked_runs_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Runs not asked for are absent, not null: null could be read as "none".
        data = handler(self)
        if self.last_runs is None:
            data.pop("lastRuns", None)
            data.pop("last_runs", None)
        return data

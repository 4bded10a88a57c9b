"""Applying a workflow's :class:`~flue_core.flow.limits.Limits` to ready runs taken in order, for a
store that holds its runs in Python (the memory store; a backend may use it the same way): count what
holds each bucket, then ask about each candidate and record each run taken."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta

from flue_core.flow.limits import Limits
from flue_core.models import RunRecord, RunStatus


class Gate:
    """One take's view of the limits. ``count`` every run that may hold a slot or a start (``owned``:
    it has an owner), then ``admits`` a candidate or not, and ``took`` each one taken; ``retry_at``
    is then :attr:`~flue_core.flow.limits.Taken.retry_at`."""

    __slots__ = ("_busy", "_limits", "_now", "_starts", "retry_at")

    def __init__(self, limits: Mapping[str, Limits], now: datetime) -> None:
        self._limits = {workflow: limit for workflow, limit in limits.items() if limit.limited}
        self._now = now
        self._busy: dict[tuple[str, str | None], int] = defaultdict(int)
        self._starts: dict[tuple[str, str | None], list[datetime]] = defaultdict(list)
        self.retry_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether any workflow taken from has a limit (else counting is not needed)."""
        return bool(self._limits)

    def count(self, record: RunRecord, owned: bool) -> None:
        limits = self._limits.get(record.workflow)
        if limits is None:
            return
        if limits.concurrency is not None and owned and record.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            self._busy[(record.workflow, record.concurrency_key)] += 1
        if limits.rate is not None and limits.per is not None:
            started = record.started_at
            if started is not None:
                if started > self._now - timedelta(seconds=limits.per):
                    self._starts[(record.workflow, record.rate_key)].append(started)
            elif owned and record.status == RunStatus.QUEUED:
                self._starts[(record.workflow, record.rate_key)].append(self._now)

    def admits(self, record: RunRecord) -> bool:
        limits = self._limits.get(record.workflow)
        if limits is None:
            return True
        if limits.concurrency is not None and self._busy[(record.workflow, record.concurrency_key)] >= limits.concurrency:
            return False
        if limits.rate is not None and limits.per is not None and record.started_at is None:
            starts = self._starts[(record.workflow, record.rate_key)]
            if len(starts) >= limits.rate:
                starts.sort()
                free = starts[len(starts) - limits.rate] + timedelta(seconds=limits.per)
                self.retry_at = free if self.retry_at is None else min(self.retry_at, free)
                return False
        return True

    def took(self, record: RunRecord) -> None:
        limits = self._limits.get(record.workflow)
        if limits is None:
            return
        if limits.concurrency is not None:
            self._busy[(record.workflow, record.concurrency_key)] += 1
        if limits.rate is not None and record.started_at is None:
            self._starts[(record.workflow, record.rate_key)].append(self._now)

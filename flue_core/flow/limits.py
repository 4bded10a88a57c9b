"""What the store contract knows of flow control: the limits of a workflow's starts, what a take from
the ready pool returns, and the range of priorities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flue_core.models import RunRecord

#: The lowest and highest priority a run may have; the default is 0. Higher goes first.
MIN_PRIORITY = -100
MAX_PRIORITY = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """How a workflow's ready runs may start, as :meth:`RunStore.take_ready` applies them.

    ``concurrency``: at most this many runs running (or queued for a worker) at once per
    ``concurrency_key`` value (runs without a key share one bucket). ``rate`` and ``per``: at most
    ``rate`` first starts in any ``per`` seconds per ``rate_key`` value (runs without a key share one
    bucket); runs that started before (resumed after a wait, a retry or an interruption) are not
    counted and not held back."""

    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Taken:
    """What :meth:`RunStore.take_ready` gave a worker: ``records`` (now queued for it), and
    ``retry_at``: when runs were left in the pool only because their rate limit is spent, a time by
    which one of those limits has room again (the worker looks again then), else ``None``."""

    records: list[RunRecord] = field(default_factory=list)
    retry_at: datetime | None = None

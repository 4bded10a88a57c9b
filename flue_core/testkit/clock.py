"""The virtual clock of a test environment: it stands still until the test moves it forward."""

from __future__ import annotations

import contextvars
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel

from flue_core.clock import Clock, as_utc
from flue_core.testkit.errors import InvalidTimeAdvance

#: The run whose execution the current task belongs to (set around each execution by the environment).
current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("flue_testkit_run", default=None)
#: The earliest a virtual clock may show: run ids carry their creation time from 1970 on.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(eq=False)
class _Sleeper:
    until: datetime
    run_id: str | None
    woken: anyio.Event = field(default_factory=anyio.Event)


class VirtualClock(Clock):
    """A clock that shows ``start`` until :meth:`move_to` moves it on.

    ``now()`` is what sleeps, signal deadlines, retry back-offs, delayed starts and schedule ticks
    are measured against; ``sleep()`` (a step's retry back-off) returns once the clock has been moved
    past its end. Time never goes back: :class:`InvalidTimeAdvance`.
    """

    def __init__(self, start: datetime) -> None:
        self._now = checked_time(start, "start")
        if self._now < EPOCH:
            raise InvalidTimeAdvance(
                f"A virtual clock starts in 1970 or later, not at {start!r}.", details={"start": start.isoformat()}
            )
        self._sleepers: list[_Sleeper] = []

    def now(self) -> datetime:  # type: ignore[override]
        return self._now

    async def sleep(self, seconds: float) -> None:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self._now + timedelta(seconds=seconds), current_run.get())
        self._sleepers.append(sleeper)
        try:
            await sleeper.woken.wait()
        finally:
            self._sleepers.remove(sleeper)

    def move_to(self, when: datetime) -> None:
        """Show ``when`` from now on (later than or equal to now), waking the sleeps that ended."""
        when = checked_time(when, "when")
        if when < self._now:
            raise InvalidTimeAdvance(
                f"Time only moves forward: the clock shows {self._now.isoformat()}, so it cannot move to {when.isoformat()}.",
                details={"now": self._now.isoformat(), "requested": when.isoformat()},
            )
        self._now = when
        for sleeper in self._sleepers:
            if sleeper.until <= when:
                sleeper.woken.set()

    def next_wake(self) -> datetime | None:
        """When the earliest sleep still waiting ends, or ``None``."""
        pending = [sleeper.until for sleeper in self._sleepers if not sleeper.woken.is_set()]
        return min(pending) if pending else None

    def sleeping(self) -> Counter[str | None]:
        """How many sleeps each run has waiting (by run id)."""
        return Counter(sleeper.run_id for sleeper in self._sleepers if not sleeper.woken.is_set())

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()})"


def checked_time(when: object, name: str) -> datetime:
    """``when`` as an aware UTC datetime to the millisecond; a naive or non-datetime value is refused."""
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidTimeAdvance(f"{name} must be a timezone-aware datetime, not {when!r}.", details={name: repr(when)})
    return as_utc(when)

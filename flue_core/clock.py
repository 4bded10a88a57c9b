"""The clock a runtime decides *when* by: a sleep's end, a signal wait's deadline, a retry's back-off,
a delayed start, a schedule's ticks and the local target's wake-ups.

Every runtime has one (``Runtime.clock``). The default is the wall clock; ``flue_core.testkit`` gives a
runtime a virtual one that a test moves forward. Record and event timestamps that decide nothing
(``started_at``, an event's ``timestamp``) stay on the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

from flue_core.models import utc_now


class Clock:
    """The wall clock: ``now()`` is :func:`~flue_core.models.utc_now` (UTC, to the millisecond) and
    ``sleep()`` is ``anyio.sleep``. A subclass replaces both, together."""

    # The function itself, not a method calling it: the default clock costs no extra call.
    now = staticmethod(utc_now)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (a step's retry back-off, which is not stored)."""
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: The clock of every runtime that was not given another.
SYSTEM_CLOCK = Clock()


def as_utc(when: datetime) -> datetime:
    """``when`` in UTC, truncated to the millisecond like every time Flue stores."""
    when = when.astimezone(UTC)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)

"""Cron expressions and time zones, read with ``cronsim`` (five fields, DST handled per zone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flue_core.errors import InvalidSchedule

MAX_CRON_LENGTH = 256
#: Names the zone database answers for that are not zones but this machine's settings.
_MACHINE_ZONES = frozenset({"localtime", "posixrules"})


def zone(timezone: str) -> ZoneInfo:
    """The IANA time zone ``timezone`` (``UTC``, ``Europe/Berlin``...), or :class:`InvalidSchedule`."""
    if not isinstance(timezone, str) or not timezone or len(timezone) > 64 or ".." in timezone or timezone in _MACHINE_ZONES:
        raise InvalidSchedule(f"Unknown time zone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'.")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"Unknown time zone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'.",
            details={"timezone": timezone},
        ) from None


def check_cron(cron: str, timezone: str = "UTC") -> None:
    """Raise :class:`InvalidSchedule` unless ``cron`` is a valid expression that ever fires."""
    tz = zone(timezone)
    if not isinstance(cron, str) or not cron.strip() or len(cron) > MAX_CRON_LENGTH:
        raise InvalidSchedule(f"A schedule needs a cron expression such as '*/5 * * * *', not {cron!r}.")
    if len(cron.split()) != 5:  # cronsim would read a sixth field as seconds
        raise InvalidSchedule(
            f"Invalid cron expression {cron!r}: it needs five fields (minute hour day-of-month month "
            "day-of-week); a field of seconds is not supported.",
            details={"cron": cron},
        )
    try:
        next(CronSim(cron, datetime.now(tz)))
    except (CronSimError, StopIteration) as exc:
        raise InvalidSchedule(
            f"Invalid cron expression {cron!r}: {exc or 'it never fires'}.", details={"cron": cron}
        ) from None


def ticks_after(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The expression's times strictly after ``after``, in UTC, in order."""
    for tick in CronSim(cron, after.astimezone(zone(timezone))):
        yield tick.astimezone(UTC)


def ticks_until(cron: str, timezone: str, until: datetime) -> Iterator[datetime]:
    """The expression's times at or before ``until``, in UTC, newest first."""
    # cronsim counts back from strictly before its start: start just after ``until`` to include it.
    start = (until + timedelta(microseconds=1)).astimezone(zone(timezone))
    for tick in CronSim(cron, start, reverse=True):
        yield tick.astimezone(UTC)

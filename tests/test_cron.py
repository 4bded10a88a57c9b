"""Cron expressions and time zones (read with cronsim): validation and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flue_core.cron import check_cron, ticks_after, ticks_until
from flue_core.errors import InvalidSchedule


@pytest.mark.parametrize("cron", ["", " ", "* * *", "61 * * * *", "* * 32 * *", "* * 30 2 *", "bad cron at all", 5, None, "* " * 200, "* * * * * *", "0 0 * * * * 2026"])
def test_a_malformed_or_never_firing_expression_is_refused(cron):
    with pytest.raises(InvalidSchedule):
        check_cron(cron)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd", "UTC ", 3, "localtime", "posixrules"])
def test_an_unknown_time_zone_is_refused(zone):
    with pytest.raises(InvalidSchedule):
        check_cron("* * * * *", zone)  # type: ignore[arg-type]


def test_ticks_are_in_utc_and_follow_their_zone_across_daylight_saving():
    # Berlin springs forward on 2026-03-29 (02:00 → 03:00) and falls back on 2026-10-25.
    spring = list(_take(ticks_after("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC)), 2))
    assert spring == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    autumn = list(_take(ticks_after("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC)), 2))
    assert autumn == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_ticks_until_include_the_moment_itself_newest_first():
    moment = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert list(_take(ticks_until("*/30 * * * *", "UTC", moment), 3)) == [
        moment,
        datetime(2026, 1, 1, 11, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 11, 0, tzinfo=UTC),
    ]


def _take(iterator, count):  # type: ignore[no-untyped-def]
    for _, value in zip(range(count), iterator):
        yield value

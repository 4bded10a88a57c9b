"""What the run store sends to Postgres and makes of its answers: records, event frames, schedules.

A record comes back as a row of :data:`~flue_postgres.schema.RECORD_COLUMNS` (a read) or as the JSON
array of the same columns the functions of ``sql/runs.sql`` build (a write's answer): times as
datetimes or ISO 8601 text, JSON values as their stored text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flue_core.models import RunError, RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp
from flue_core.store import NewEvent, event_json

__all__ = ["FRAMES", "dumps", "encodable", "record_of", "schedule_definition", "schedule_of", "text_in", "text_out", "timestamp"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUSES = {status.value: status for status in RunStatus}
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON text of a value Flue already checked (a snapshot: finite numbers, valid text)."""
    return _ENCODER.encode(value)


def text_in(value: str | None) -> str | None:
    """``value`` as Postgres text can hold it: text cannot hold NUL, which keys and step names may. A
    value with a NUL or a backslash is stored with both escaped (``\\0``, ``\\\\``); any other as is,
    so a stored backslash always begins an escape and :func:`text_out` knows which to undo."""
    if value is None or ("\x00" not in value and "\\" not in value):
        return value
    return value.replace("\\", "\\\\").replace("\x00", "\\0")


def text_out(value: str | None) -> str | None:
    """The value :func:`text_in` stored as ``value``."""
    if value is None or "\\" not in value:
        return value
    return _ESCAPE.sub(lambda match: "\x00" if match.group(1) == "0" else "\\", value)


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def encodable(text: str) -> bool:
    """Whether ``text`` can go to Postgres as UTF-8: an event that cannot (a lone surrogate slipped under
    ``ctx.emit``'s checks) is dropped alone, never failing the batch it would share."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _time(value: datetime | str | None) -> datetime | None:
    """A time as a row holds it (asyncpg's datetime) or as JSON does (ISO 8601: sessions are in UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def record_of(row: Sequence[Any]) -> RunRecord:
    """The record of a row of :data:`~flue_postgres.schema.RECORD_COLUMNS`, as asyncpg returns it or as
    a JSON array (trusted: the store wrote every value itself)."""
    (run_id, workflow, status, input_, key, attempt, created, started, ended, result, error, cancel, parent, wake_at,
     waiting_for, carrier, recoveries, rerun_of, priority, concurrency_key, rate_key, debounce_key) = row  # fmt: skip
    return RunRecord.trusted(
        run_id=run_id,
        workflow=workflow,
        status=_STATUSES[status],
        input=_json(input_),
        key=text_out(key),
        attempt=attempt,
        created_at=_time(created),
        started_at=_time(started),
        ended_at=_time(ended),
        result=_json(result),
        error=None if error is None else RunError.model_validate_json(error),
        cancel_requested=cancel,
        parent_run_id=parent,
        wake_at=_time(wake_at),
        waiting_for=None if waiting_for is None else WaitingFor.model_validate_json(waiting_for),
        carrier=_json(carrier),
        recoveries=recoveries,
        rerun_of=rerun_of,
        priority=priority,
        concurrency_key=text_out(concurrency_key),
        rate_key=text_out(rate_key),
        debounce_key=text_out(debounce_key),
        queued_for=None,  # told by the runtime when the run is read
    )


def timestamp(when: datetime | None) -> str | None:
    return None if when is None else format_timestamp(when)


# -- events the functions write themselves --------------------------------------------------------------
#
# A function knows an event's index only when it writes it, so it gets the event's JSON in pieces cut
# once from event_json (the one definition of the wire shape) around placeholders: run ids, types and
# timestamps need no escaping.

_RUN, _TYPE = "RUN-PLACEHOLDER", "TYPE-PLACEHOLDER"


def _cut() -> list[str]:
    text = event_json(_RUN, NewEvent(-1, _TYPE, {}, EPOCH))
    when = format_timestamp(EPOCH)
    before_run, rest = text.split(_RUN)
    between, rest = rest.split('"index":-1')
    before_when, rest = rest.split(when)
    before_type, rest = rest.split(_TYPE)
    if not rest.endswith("{}}"):
        raise AssertionError(f"unexpected event shape: {text}")
    return [before_run, between + '"index":', before_when, before_type, rest[: -len("{}}")]]


#: ``f`` of ``sql/runs.sql``: event = f[1] || run_id || f[2] || index || f[3] || when || f[4] || type || f[5] || data || '}'.
FRAMES = _cut()

#: ``Outcome.event_data`` ends with the duration, which the store computes from the stored start.
DURATION_TAIL = '"durationMs":null}'


# -- schedules -----------------------------------------------------------------------------------------


def schedule_definition(schedule: Schedule) -> str:
    """The part of a schedule :meth:`~flue_core.store.RunStore.put_schedule` may replace."""
    return dumps(schedule.model_dump(mode="json", exclude={"name", "created_at", "last_tick"}))


def schedule_of(fields: list[Any]) -> Schedule:
    name, definition, created, tick = fields
    return Schedule.model_validate({**json.loads(definition), "name": text_out(name), "created_at": created, "last_tick": tick})

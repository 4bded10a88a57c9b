"""What the Redis run store sends to its script and makes of the answers: records, event frames, times.

A run is the hash ``<prefix>:run:<id>`` (``docs/redis.md`` lists its fields); its record is built from
the hash's fields as Redis returns them (``HGETALL``: name, value, name, value...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from flue_core.models import STATUSES, RunError, RunRecord, Schedule, WaitingFor, format_timestamp, parse_timestamp
from flue_core.snapshot import dumps
from flue_core.store import NewEvent, event_json

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ms(when: datetime) -> int:
    """Milliseconds since the epoch, exactly (the scores of the store's time indexes)."""
    return (when - EPOCH) // _MS


def from_ms(value: int | float | str) -> datetime:
    return EPOCH + timedelta(milliseconds=int(float(value)))


def record_of(flat: list[str]) -> RunRecord:
    """The record of a run hash's fields (trusted: built without re-validation)."""
    row = dict(zip(flat[::2], flat[1::2]))
    get = row.get
    started, ended, wake_at = get("sa"), get("ea"), get("wa")
    input_, result, error, waiting, carrier = get("in"), get("res"), get("err"), get("wfor"), get("car")
    return RunRecord.trusted(
        run_id=row["id"],
        workflow=row["wf"],
        status=STATUSES[row["st"]],
        input=None if input_ is None else json.loads(input_),
        key=get("key"),
        attempt=int(row["att"]),
        created_at=parse_timestamp(row["ca"]),
        started_at=None if started is None else parse_timestamp(started),
        ended_at=None if ended is None else parse_timestamp(ended),
        result=None if result is None else json.loads(result),
        error=None if error is None else RunError.model_validate_json(error),
        cancel_requested=get("cr") == "1",
        parent_run_id=get("par"),
        wake_at=None if wake_at is None else parse_timestamp(wake_at),
        waiting_for=None if waiting is None else WaitingFor.model_validate_json(waiting),
        carrier=None if carrier is None else json.loads(carrier),
        recoveries=int(get("rc") or 0),
        rerun_of=get("rr"),
        priority=int(get("pri") or 0),
        concurrency_key=get("ck"),
        rate_key=get("rk"),
        debounce_key=get("dk"),
        queued_for=None,  # told by the runtime when the run is read
    )


def netstrings(items: Iterable[str]) -> str:
    """``items`` as one argument the script splits again: ``<length in bytes>:<text>`` each, back to
    back (a script's arguments are unpacked onto a bounded stack, so a re-run's thousands of steps
    go as one)."""
    return "".join(f"{len(item.encode())}:{item}" for item in items)


def json_or_empty(value: Any) -> str:
    """A value's JSON, or ``""`` for ``None`` (a field the script leaves out)."""
    return "" if value is None else dumps(value)


# -- events the script writes itself ------------------------------------------------------------------
#
# The script knows an event's index only when it writes it, so it gets the event's JSON in pieces:
# head + index + mid + data + "}". The pieces are cut once from event_json (the one definition of the
# wire shape) around placeholders, then filled in: run ids, types and timestamps need no escaping.

_RUN, _TYPE, _WHEN = "RUN-PLACEHOLDER", "TYPE-PLACEHOLDER", EPOCH


def _cut() -> tuple[str, str, str, str, str]:
    text = event_json(_RUN, NewEvent(-1, _TYPE, {}, _WHEN))
    when = format_timestamp(_WHEN)
    before_run, rest = text.split(_RUN)
    between, rest = rest.split('"index":-1')
    before_when, rest = rest.split(when)
    before_type, rest = rest.split(_TYPE)
    assert rest.endswith("{}}"), text
    return before_run, between + '"index":', before_when, before_type, rest[: -len("{}}")]


_BEFORE_RUN, _AFTER_RUN, _BEFORE_WHEN, _BEFORE_TYPE, _AFTER_TYPE = _cut()


def event_head(run_id: str) -> str:
    """``{"runId":"<id>","index":`` — what precedes the index in every event of the run."""
    return _BEFORE_RUN + run_id + _AFTER_RUN


def event_head_around() -> tuple[str, str]:
    """What comes before and after the run id in :func:`event_head`, for a script that writes an
    event of a run the caller does not know (the run a debounced start folds into)."""
    return _BEFORE_RUN, _AFTER_RUN


def key_or_empty(value: str | None) -> str:
    """A flow-control key for the script: ``""`` for none, else ``=`` and the value (which may be empty)."""
    return "" if value is None else "=" + value


def event_mid(type: str, when: str) -> str:
    """What lies between the index and the data of an event of ``type`` written at ``when``
    (formatted by :func:`~flue_core.models.format_timestamp`)."""
    return _BEFORE_WHEN + when + _BEFORE_TYPE + type + _AFTER_TYPE


#: ``Outcome.event_data`` ends with the duration, which the script computes from the stored start.
DURATION_TAIL = '"durationMs":null}'


# -- schedules ----------------------------------------------------------------------------------------


def schedule_definition(schedule: Schedule) -> str:
    """The part of a schedule :meth:`~flue_core.store.RunStore.put_schedule` may replace."""
    return dumps(schedule.model_dump(mode="json", exclude={"name", "created_at", "last_tick"}))


def schedule_of(fields: list[str]) -> Schedule:
    name, definition, created, tick = fields
    return Schedule.model_validate({**json.loads(definition), "name": name, "created_at": created, "last_tick": tick or None})


def timestamp_or_empty(when: datetime | None) -> str:
    return "" if when is None else format_timestamp(when)

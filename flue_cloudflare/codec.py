"""The JSON form of what crosses a Durable Object call: store requests and answers, and errors.

Calls between a Worker and its objects carry one JSON text each way rather than Python objects
converted to JavaScript and back: the conversion would turn dicts into ``Map``s, ``None`` into
``undefined`` and exceptions into untyped errors. Datetimes travel as ISO 8601 text; a
:class:`~flue_core.errors.FlueError` raised inside an object is raised again, with its class, ``code``
and ``details``, by the caller (:func:`raise_error`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flue_core.errors import FlueError, error_classes, make_error
from flue_cloudflare.errors import ValueTooLarge  # noqa: F401 - a class raise_error must know
from flue_cloudflare.record_json import dumps_record, loads_record
from flue_core.flow.limits import Limits, Taken
from flue_core.models import RunError, RunRecord, RunStatus, Schedule, WaitingFor, format_timestamp, parse_timestamp
from flue_core.store import (
    Admission,
    Attempt,
    Delivery,
    EventPage,
    NewEvent,
    NewRun,
    NewSignal,
    Outcome,
    RunQuery,
    SignalSent,
    StoredEvent,
    Suspended,
    Suspension,
    WorkerInfo,
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


loads = json.loads


def when(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def moment(value: str | None) -> datetime | None:
    return None if value is None else parse_timestamp(value)


# -- records ----------------------------------------------------------------------------------------


#: The JSON of the records encoded last, by identity (records are immutable): an operation encodes the
#: same record for the run's row, the index's copy and its answer.
_ENCODED: dict[int, tuple[RunRecord, str]] = {}
_ENCODED_KEPT = 64


def record_json(record: RunRecord) -> str:
    kept = _ENCODED.get(id(record))
    if kept is not None and kept[0] is record:
        return kept[1]
    text = dumps_record(record)
    if len(_ENCODED) >= _ENCODED_KEPT:
        del _ENCODED[next(iter(_ENCODED))]
    _ENCODED[id(record)] = (record, text)  # the record is held, so its id is not reused meanwhile
    return text


def record_of(text: str) -> RunRecord:
    return loads_record(text)


def maybe_record(text: str | None) -> RunRecord | None:
    return None if text is None else record_of(text)


def schedule_json(schedule: Schedule) -> str:
    return schedule.model_dump_json()


def schedule_of(text: str) -> Schedule:
    return Schedule.model_validate_json(text)


# -- requests ---------------------------------------------------------------------------------------


def event_wire(event: NewEvent) -> dict[str, Any]:
    return {"index": event.index, "type": event.type, "data": event.data, "at": when(event.timestamp)}


def event_of(wire: dict[str, Any]) -> NewEvent:
    return NewEvent(wire["index"], wire["type"], wire["data"], parse_timestamp(wire["at"]))


def new_run_wire(run: NewRun) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "runId": run.run_id,
        "workflow": run.workflow,
        "input": run.input,
        "key": run.key,
        "createdAt": when(run.created_at),
        "owner": run.owner,
        "first": event_wire(run.first_event),
        "parent": run.parent_run_id,
        "startAt": when(run.start_at),
        "carrier": run.carrier,
    }
    # Only a re-run carries these: an ordinary admission's request stays as small as it was.
    if run.rerun_of is not None:
        wire["rerunOf"] = run.rerun_of
    if run.steps:
        wire["steps"] = [list(step) for step in run.steps]
    # Likewise the flow-control fields, only when a workflow's policy set them.
    for name, value in (("priority", run.priority or None), ("concurrencyKey", run.concurrency_key),
                        ("rateKey", run.rate_key), ("debounceKey", run.debounce_key)):  # fmt: skip
        if value is not None:
            wire[name] = value
    return wire


def new_run_of(wire: dict[str, Any]) -> NewRun:
    return NewRun(
        wire["runId"],
        wire["workflow"],
        wire["input"],
        wire["key"],
        parse_timestamp(wire["createdAt"]),
        wire["owner"],
        event_of(wire["first"]),
        parent_run_id=wire["parent"],
        start_at=moment(wire["startAt"]),
        carrier=wire["carrier"],
        rerun_of=wire.get("rerunOf"),
        steps=tuple((name, value) for name, value in wire.get("steps", ())),
        priority=wire.get("priority", 0),
        concurrency_key=wire.get("concurrencyKey"),
        rate_key=wire.get("rateKey"),
        debounce_key=wire.get("debounceKey"),
    )


def outcome_wire(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status.value,
        "endedAt": when(outcome.ended_at),
        "result": outcome.result,
        "error": None if outcome.error is None else outcome.error.model_dump(mode="json"),
    }


def outcome_of(wire: dict[str, Any]) -> Outcome:
    error = wire["error"]
    return Outcome(
        RunStatus(wire["status"]),
        parse_timestamp(wire["endedAt"]),
        wire["result"],
        None if error is None else RunError.model_validate(error),
    )


def suspension_wire(suspension: Suspension) -> dict[str, Any]:
    return {
        "for": suspension.waiting_for.model_dump(mode="json", exclude_none=True),
        "wakeAt": when(suspension.wake_at),
    }


def suspension_of(wire: dict[str, Any]) -> Suspension:
    return Suspension(WaitingFor.model_validate(wire["for"]), moment(wire["wakeAt"]))


def signal_wire(signal: NewSignal) -> dict[str, Any]:
    return {
        "id": signal.signal_id,
        "name": signal.name,
        "data": signal.data,
        "key": signal.key,
        "at": when(signal.sent_at),
    }


def signal_of(wire: dict[str, Any]) -> NewSignal:
    return NewSignal(wire["id"], wire["name"], wire["data"], wire["key"], parse_timestamp(wire["at"]))


def query_wire(query: RunQuery) -> dict[str, Any]:
    after = None if query.after is None else [when(query.after[0]), query.after[1]]
    status = None if query.status is None else query.status.value
    return {
        "workflow": query.workflow,
        "status": status,
        "limit": query.limit,
        "after": after,
        "parent": query.parent,
        "rerunOf": query.rerun_of,
        "concurrencyKey": query.concurrency_key,
        "rateKey": query.rate_key,
        "startedAfter": when(query.started_after),
    }


def query_of(wire: dict[str, Any]) -> RunQuery:
    after = wire["after"]
    return RunQuery(
        workflow=wire["workflow"],
        status=None if wire["status"] is None else RunStatus(wire["status"]),
        limit=wire["limit"],
        after=None if after is None else (parse_timestamp(after[0]), after[1]),
        parent=wire["parent"],
        rerun_of=wire.get("rerunOf"),
        concurrency_key=wire.get("concurrencyKey"),
        rate_key=wire.get("rateKey"),
        started_after=moment(wire.get("startedAfter")),
    )


def limits_wire(workflows: Mapping[str, Limits]) -> dict[str, list[Any]]:
    """The limits of ``take_ready``'s workflows: ``[concurrency, rate, per]`` by name."""
    return {name: [limits.concurrency, limits.rate, limits.per] for name, limits in workflows.items()}


def limits_of(wire: dict[str, list[Any]]) -> dict[str, Limits]:
    return {name: Limits(*values) for name, values in wire.items()}


def taken_wire(taken: Taken) -> dict[str, Any]:
    return {"records": [record_json(record) for record in taken.records], "retryAt": when(taken.retry_at)}


def taken_of(wire: dict[str, Any]) -> Taken:
    return Taken([record_of(text) for text in wire["records"]], moment(wire["retryAt"]))


def worker_wire(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "pidStarted": worker.pid_started,
        "heartbeatAt": worker.heartbeat_at,
    }


def worker_of(wire: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(wire["id"], wire["host"], wire["pid"], wire["pidStarted"], wire["heartbeatAt"])


# -- answers ----------------------------------------------------------------------------------------


def admission_wire(admission: Admission) -> dict[str, Any]:
    return {"record": record_json(admission.record), "created": admission.created}


def admission_of(wire: dict[str, Any]) -> Admission:
    return Admission(record_of(wire["record"]), wire["created"])


def attempt_wire(attempt: Attempt | None) -> dict[str, Any] | None:
    if attempt is None:
        return None
    return {"record": record_json(attempt.record), "next": attempt.next_index, "resumed": attempt.resumed}


def attempt_of(wire: dict[str, Any] | None) -> Attempt | None:
    return None if wire is None else Attempt(record_of(wire["record"]), wire["next"], wire["resumed"])


def suspended_wire(answer: Suspended | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {"suspended": answer.suspended, "next": answer.next_index, "record": record_json(answer.record)}


def suspended_of(wire: dict[str, Any] | None) -> Suspended | None:
    return None if wire is None else Suspended(wire["suspended"], wire["next"], record_of(wire["record"]))


def sent_wire(sent: SignalSent) -> dict[str, Any]:
    return {
        "id": sent.signal_id,
        "created": sent.created,
        "record": record_json(sent.record),
        "name": sent.name,
        "data": sent.data,
    }


def sent_of(wire: dict[str, Any]) -> SignalSent:
    return SignalSent(wire["id"], wire["created"], record_of(wire["record"]), wire["name"], wire["data"])


def delivery_wire(delivery: Delivery | None) -> dict[str, Any] | None:
    if delivery is None:
        return None
    signal = None if delivery.signal is None else sent_wire(delivery.signal)
    return {"signal": signal, "next": delivery.next_index}


def delivery_of(wire: dict[str, Any] | None) -> Delivery | None:
    if wire is None:
        return None
    return Delivery(None if wire["signal"] is None else sent_of(wire["signal"]), wire["next"])


def page_wire(page: EventPage | None) -> dict[str, Any] | None:
    if page is None:
        return None
    return {"events": [[event.index, event.json] for event in page.events], "tail": page.tail, "closed": page.closed}


def page_of(wire: dict[str, Any] | None) -> EventPage | None:
    if wire is None:
        return None
    return EventPage([StoredEvent(index, text) for index, text in wire["events"]], wire["tail"], wire["closed"])


# -- errors -----------------------------------------------------------------------------------------


def error_wire(error: FlueError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "details": error.details}


def raise_error(wire: dict[str, Any]) -> None:
    """Raise the :class:`FlueError` an object answered with, as the class its ``code`` names."""
    cls = error_classes().get(wire["code"], FlueError)
    raise make_error(cls, wire["message"], details=wire.get("details") or None, code=wire["code"])

"""Every :class:`~flue_core.store.RunStore` operation as JSON: how a caller elsewhere writes its
arguments and reads its answer, and how a Worker performs it on the objects.

This is what lets a process outside the Worker use the Durable Objects as its store
(``flue_cloudflare.devtools.RemoteRunStore`` on a host, through the endpoint of
:mod:`flue_cloudflare.testing`), so that every rule of the store contract is checked on real Durable
Object storage by the unchanged contract suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flue_core.models import RunStatus
from flue_core.store import RunStore
from flue_cloudflare import codec


@dataclass(frozen=True)
class StoreOp:
    """``request(*args, **kwargs)`` → wire (caller); ``perform(store, wire)`` → result and
    ``answer(result)`` → wire (Worker); ``result(wire)`` → result (caller). ``run``: the operation
    concerns one run, named by its first argument (queued appends of that run are sent first)."""

    request: Callable[..., Any]
    perform: Callable[[RunStore, Any], Awaitable[Any]]
    answer: Callable[[Any], Any] = lambda value: value
    result: Callable[[Any], Any] = lambda value: value
    run: bool = False


def _records(records: Any) -> Any:
    return [codec.record_json(record) for record in records]


def _record(record: Any) -> Any:
    return None if record is None else codec.record_json(record)


def _only(statuses: Any) -> Any:
    return None if statuses is None else [RunStatus(status).value for status in statuses]


OPS: dict[str, StoreOp] = {
    "admit": StoreOp(
        lambda run: codec.new_run_wire(run),
        lambda store, w: store.admit(codec.new_run_of(w)),
        codec.admission_wire,
        codec.admission_of,
    ),
    "claim": StoreOp(
        lambda run_id, owner, *, limit=None: {"runId": run_id, "owner": owner, "limit": limit},
        lambda store, w: store.claim(w["runId"], w["owner"], limit=w["limit"]),
        codec.attempt_wire,
        codec.attempt_of,
        run=True,
    ),
    "requeue": StoreOp(
        lambda run_id, owner, *, held_by=None, interrupted=False: {
            "runId": run_id,
            "owner": owner,
            "heldBy": held_by,
            "interrupted": interrupted,
        },
        lambda store, w: store.requeue(
            w["runId"], w["owner"], held_by=w["heldBy"], interrupted=w.get("interrupted", False)
        ),
        _record,
        codec.maybe_record,
        run=True,
    ),
    "suspend": StoreOp(
        lambda run_id, owner, suspension: {"runId": run_id, "owner": owner, "s": codec.suspension_wire(suspension)},
        lambda store, w: store.suspend(w["runId"], w["owner"], codec.suspension_of(w["s"])),
        codec.suspended_wire,
        codec.suspended_of,
        run=True,
    ),
    "finish": StoreOp(
        lambda run_id, outcome, *, only_from=None, held_by=None: {
            "runId": run_id,
            "outcome": codec.outcome_wire(outcome),
            "onlyFrom": _only(only_from),
            "heldBy": held_by,
        },
        lambda store, w: store.finish(
            w["runId"],
            codec.outcome_of(w["outcome"]),
            only_from=None if w["onlyFrom"] is None else {RunStatus(s) for s in w["onlyFrom"]},
            held_by=w["heldBy"],
        ),
        _record,
        codec.maybe_record,
        run=True,
    ),  # fmt: skip
    "request_cancel": StoreOp(
        lambda run_id: {"runId": run_id},
        lambda store, w: store.request_cancel(w["runId"]),
        _record,
        codec.maybe_record,
        run=True,
    ),
    "take_ready": StoreOp(
        lambda owner, workflows, limit, *, only=None: {
            "owner": owner,
            "workflows": codec.limits_wire(workflows),
            "limit": limit,
            "only": None if only is None else list(only),
        },
        lambda store, w: store.take_ready(w["owner"], codec.limits_of(w["workflows"]), w["limit"], only=w["only"]),
        codec.taken_wire,
        codec.taken_of,
    ),  # fmt: skip
    "wake_due": StoreOp(
        lambda now, limit=1000: {"now": codec.when(now), "limit": limit},
        lambda store, w: store.wake_due(codec.moment(w["now"]), w["limit"]),
    ),
    "next_wake": StoreOp(lambda: None, lambda store, w: store.next_wake(), codec.when, codec.moment),
    "append": StoreOp(
        lambda run_id, events: {"runId": run_id, "events": [codec.event_wire(event) for event in events]},
        lambda store, w: _append(store, w["runId"], [codec.event_of(event) for event in w["events"]]),
    ),
    "read": StoreOp(
        lambda run_id, after, limit: {"runId": run_id, "after": after, "limit": limit},
        lambda store, w: store.read(w["runId"], w["after"], w["limit"]),
        codec.page_wire,
        codec.page_of,
        run=True,
    ),
    "get": StoreOp(
        lambda run_id: {"runId": run_id}, lambda store, w: store.get(w["runId"]), _record, codec.maybe_record, run=True
    ),
    "list": StoreOp(
        codec.query_wire,
        lambda store, w: store.list(codec.query_of(w)),
        _records,
        lambda wire: [codec.record_of(text) for text in wire],
    ),
    "prune": StoreOp(
        lambda ended_before, limit=1000: {"before": codec.when(ended_before), "limit": limit},
        lambda store, w: store.prune(codec.moment(w["before"]), w["limit"]),
    ),
    "save_step": StoreOp(
        lambda run_id, name, value: {"runId": run_id, "name": name, "value": value},
        lambda store, w: store.save_step(w["runId"], w["name"], w["value"]),
        run=True,
    ),
    "load_steps": StoreOp(lambda run_id: {"runId": run_id}, lambda store, w: store.load_steps(w["runId"]), run=True),
    "send_signal": StoreOp(
        lambda run_id, signal: {"runId": run_id, "signal": codec.signal_wire(signal)},
        lambda store, w: store.send_signal(w["runId"], codec.signal_of(w["signal"])),
        codec.sent_wire,
        codec.sent_of,
        run=True,
    ),
    "take_signal": StoreOp(
        lambda run_id, owner, name, step, *, sent_by=None: {
            "runId": run_id,
            "owner": owner,
            "name": name,
            "step": step,
            "sentBy": codec.when(sent_by),
        },
        lambda store, w: store.take_signal(
            w["runId"], w["owner"], w["name"], w["step"], sent_by=codec.moment(w["sentBy"])
        ),
        codec.delivery_wire,
        codec.delivery_of,
        run=True,
    ),
    "put_schedule": StoreOp(
        lambda schedule, *, replace: {"schedule": codec.schedule_json(schedule), "replace": replace},
        lambda store, w: store.put_schedule(codec.schedule_of(w["schedule"]), replace=w["replace"]),
        lambda answer: [codec.schedule_json(answer[0]), answer[1]],
        lambda wire: (codec.schedule_of(wire[0]), wire[1]),
    ),
    "get_schedule": StoreOp(
        lambda name: {"name": name},
        lambda store, w: store.get_schedule(w["name"]),
        lambda found: None if found is None else codec.schedule_json(found),
        lambda wire: None if wire is None else codec.schedule_of(wire),
    ),
    "list_schedules": StoreOp(
        lambda: None,
        lambda store, w: store.list_schedules(),
        lambda found: [codec.schedule_json(schedule) for schedule in found],
        lambda wire: [codec.schedule_of(text) for text in wire],
    ),
    "delete_schedule": StoreOp(lambda name: {"name": name}, lambda store, w: store.delete_schedule(w["name"])),
    "advance_schedule": StoreOp(
        lambda name, previous, tick: {"name": name, "previous": codec.when(previous), "tick": codec.when(tick)},
        lambda store, w: store.advance_schedule(w["name"], codec.moment(w["previous"]), codec.moment(w["tick"])),
    ),
    "heartbeat": StoreOp(
        lambda worker, running=(): {"worker": codec.worker_wire(worker), "running": list(running)},
        lambda store, w: store.heartbeat(codec.worker_of(w["worker"]), w["running"]),
    ),
    "workers": StoreOp(
        lambda: None,
        lambda store, w: store.workers(),
        lambda found: [codec.worker_wire(worker) for worker in found],
        lambda wire: [codec.worker_of(item) for item in wire],
    ),
    "adopt": StoreOp(
        lambda dead, owner, workflows: {"dead": list(dead), "owner": owner, "workflows": list(workflows)},
        lambda store, w: store.adopt(w["dead"], w["owner"], w["workflows"]),
        _records,
        lambda wire: [codec.record_of(text) for text in wire],
    ),
    "retire": StoreOp(lambda worker_id: {"workerId": worker_id}, lambda store, w: store.retire(w["workerId"])),
}


async def _append(store: RunStore, run_id: str, events: list[Any]) -> None:
    store.append(run_id, events)
    await store.flush()

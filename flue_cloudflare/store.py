"""The :class:`~flue_core.store.RunStore` of the Cloudflare target: every operation performed by the
Durable Objects, from a Worker or from inside one of them.

* an operation on one run goes to that run's object (named by the run id): admission, claims,
  suspensions, events, steps, signals, the end;
* listing, the ready pool, due wake-ups, dead workers' runs, pruning and idempotency keys go to the
  index object, which calls the run objects where a run must change (each change is atomic in the
  run's own object; the index only finds candidates);
* schedules live in the schedules object.

Inside a run's object, operations on that same run are method calls on the object, not RPCs (an
object cannot wait for itself), and ``append`` writes at once. Elsewhere ``append`` queues events
and sends them in order, before the next operation on that run and on :meth:`flush`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from flue_core.flow.limits import Limits, Taken
from flue_core.models import RunRecord, RunStatus, Schedule
from flue_core.store import (
    Admission,
    Attempt,
    Capabilities,
    ChangeListener,
    Delivery,
    EventPage,
    NewEvent,
    NewRun,
    NewSignal,
    Outcome,
    RunQuery,
    RunStore,
    SignalSent,
    Suspended,
    Suspension,
    WorkerInfo,
)
from flue_cloudflare import calls, codec, debounce
from flue_cloudflare.appends import AppendQueue
from flue_cloudflare.changes import for_results
from flue_cloudflare.run_ledger import admitted, index_row

log = logging.getLogger("flue.cloudflare")

#: Runs whose latest change sequence this isolate remembers (see :meth:`ObjectStore.observed`).
SEEN_LIMIT = 10_000


class ObjectStore(RunStore):
    """Runs in Durable Objects, reached through the namespaces of ``env`` (bound by :meth:`bind`).

    ``scope`` names the objects of an independent store in the same namespaces
    (:func:`flue_cloudflare.calls.scoped`). ``limits_in_objects``: the target executes runs in their
    objects, so concurrency and rate limits are kept by limit objects, one per limited workflow and
    key value (:mod:`flue_cloudflare.limit_object`; :meth:`claim` does not count running runs), and
    admissions tell the index beside creating the run; a store whose runs are executed by workers
    elsewhere (``False``) has the index apply the limits as it takes from the pool
    (:mod:`flue_cloudflare.index_pool`).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True)

    def __init__(self, env: Any = None, *, limits_in_objects: bool = True, scope: str = "") -> None:
        self.env = env
        self.scope = scope
        self.limits_in_objects = limits_in_objects
        self._on_change: ChangeListener = lambda ids: None
        self._appends = AppendQueue(self._send_appends)
        self._seen: dict[str, int] = {}
        # (task, run id, record): the end of a run a wait of that task just saw (see :meth:`get`).
        self._ended: tuple[Any, str, str] | None = None

    def bind(self, env: Any) -> None:
        self.env = env

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change

    async def close(self) -> None:
        await self.flush()

    # -- reaching objects ---------------------------------------------------------------------------

    def _object(self, binding: str, name: str) -> Any:
        full = calls.scoped(self.scope, name)
        current = calls.handling()
        if current is not None and current.binding == binding and current.object_name == full:
            return current
        return calls.stub(self.env, binding, full)

    def serving_run(self, run_id: str) -> Any:
        """The object of run ``run_id`` if it is the one serving the current event, else ``None``."""
        current = calls.handling()
        if (
            current is not None
            and current.binding == calls.RUNS
            and current.object_name == calls.scoped(self.scope, run_id)
        ):
            return current
        return None

    async def _call(self, binding: str, name: str, op: str, payload: Any) -> Any:
        target = self._object(binding, name)
        if target is calls.handling():  # this event's own object: its operation, without JSON between
            answer = await target.perform(op, payload)
        else:
            answer = await calls.call(target, op, payload)
        changed = answer.get("c") or ()
        if binding == calls.RUNS and "s" in answer:
            self.observed(name, answer["s"], changed)
        elif changed:
            self._on_change(changed)
        return answer.get("r")

    async def _run(self, run_id: str, op: str, payload: Any = None) -> Any:
        if self._appends.pending(run_id):
            await self._appends.drain(run_id)
        return await self._call(calls.RUNS, run_id, op, payload)

    async def _index(self, op: str, payload: Any = None) -> Any:
        return await self._call(calls.INDEX, calls.INDEX_NAME, op, payload)

    async def _schedules(self, op: str, payload: Any = None) -> Any:
        return await self._call(calls.SCHEDULES, calls.SCHEDULES_NAME, op, payload)

    def observed(self, run_id: str, seq: int, changed: Iterable[str] = ()) -> None:
        """Note that run ``run_id`` is at change ``seq``: tell listeners of ``changed``, and of the run
        itself when it changed since this isolate last heard of it (another isolate changed it)."""
        ids = set(changed)
        previous = self._seen.pop(run_id, None)
        self._seen[run_id] = seq if previous is None else max(previous, seq)
        if previous is not None and seq > previous:
            ids.add(run_id)
        if len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]
        if ids:
            self._on_change(ids)

    def seen(self, run_id: str) -> int:
        """The latest change sequence of the run this isolate heard of (0: none)."""
        return self._seen.get(run_id, 0)

    async def wait_change(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in the run's object for a change after the latest one this
        isolate heard of; ``True`` if there was one (listeners are told). Waiting for the run's end
        (:func:`~flue_cloudflare.changes.waiting_for_results`), the call executes a run still in line
        there and then."""
        before = self.seen(run_id)
        request: dict[str, Any] = {"since": before, "timeout": timeout}
        if for_results():
            request["drive"] = True
        answer = await self._call(calls.RUNS, run_id, "wait", request)
        if isinstance(answer, dict) and "ended" in answer:
            self._ended = (asyncio.current_task(), run_id, answer["ended"])
        return self.seen(run_id) > before

    # -- admission and lifecycle --------------------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        wire = codec.new_run_wire(run)
        stored = admitted(codec.new_run_of(wire))  # as the object reads it (times to the millisecond)
        # Executing in their objects, runs are admitted with the index told at the same time (one hop
        # less); the run's own first row replaces that provisional one. Elsewhere, one after the other.
        row = {**index_row(stored), "version": 0} if self.limits_in_objects else None
        if run.debounce_key is not None:
            return await self._admit_debounced(run, wire, row)
        if run.key is None:
            # ``bare``: a run created answers without its record, which is the one built here.
            request = {"run": wire, "keyed": False, "indexed": row is not None, "bare": True}
            if row is None:
                return _admission(await self._run(run.run_id, "admit", request), stored.record)
            return await self._admit_beside_index(run.run_id, request, row, stored.record)
        bound, admission = await self._index(
            "bind_key",
            {"workflow": run.workflow, "key": run.key, "runId": run.run_id, "admission": codec.dumps(wire), "row": row},
        )
        try:
            request = {"run": codec.loads(admission), "keyed": True, "indexed": row is not None and bound == run.run_id}
            answer = codec.admission_of(await self._run(bound, "admit", request))
        except BaseException:
            if bound == run.run_id:  # the key names no run: free it for the next admission
                await self._index("unbind_key", {"workflow": run.workflow, "key": run.key, "runId": bound})
            raise
        # Only the admission that bound the key created the run; another one that got there (its
        # caller gone before admitting) is not this caller's to announce.
        return answer if bound == run.run_id else Admission(answer.record, created=False)

    async def _admit_debounced(self, run: NewRun, wire: dict[str, Any], row: dict[str, Any] | None) -> Admission:
        """Admit a debounced run, or fold it into the pending run of its debounce key (see
        :mod:`flue_cloudflare.debounce`): its idempotency key first, then the pending run."""
        request: dict[str, Any] = {
            "workflow": run.workflow, "debounceKey": run.debounce_key, "runId": run.run_id, "key": run.key,
            "admission": codec.dumps(wire), "row": row, "stale": None,
        }  # fmt: skip
        while True:
            what, run_id, admission = await self._index("debounce", request)
            if what == debounce.FOLD:
                fold = {
                    "admission": codec.loads(admission), "input": run.input, "startAt": codec.when(run.start_at),
                    "priority": run.priority, "concurrencyKey": run.concurrency_key, "rateKey": run.rate_key,
                }  # fmt: skip
                folded = await self._run(run_id, "fold", fold)
                if folded is not None:
                    return Admission(codec.record_of(folded), created=False)
                request["stale"] = run_id  # woken or asked to cancel: the index forgets it and decides again
                continue
            mine = what == debounce.CREATE
            admit = {"run": codec.loads(admission), "keyed": True, "indexed": mine and row is not None}
            try:
                answer = codec.admission_of(await self._run(run_id, "admit", admit))
            except BaseException:
                if mine:  # the keys name no run: free them for the next admission
                    unbind = {"workflow": run.workflow, "key": run.key, "runId": run_id, "debounce": True}
                    await self._index("unbind_key", unbind)
                raise
            # Created by this admission, even when a folding one got to create it first.
            return Admission(answer.record, created=mine)

    async def _admit_beside_index(
        self, run_id: str, request: dict[str, Any], row: dict[str, Any], record: RunRecord
    ) -> Admission:
        created, indexed = await asyncio.gather(
            self._run(run_id, "admit", request), self._index("provisional", row), return_exceptions=True
        )
        if isinstance(created, BaseException):
            if not isinstance(indexed, BaseException):
                await self._index("withdraw", {"runId": run_id, "record": row["record"]})
            raise created
        if isinstance(indexed, BaseException):  # the run's own row reaches the index from its outbox
            log.warning("flue: the index did not take run %s at admission (%s); its object sends it", run_id, indexed)
        return _admission(created, record)

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        over = False
        if limit is not None and not self.limits_in_objects:
            record = await self.get(run_id)
            if record is None:
                return None
            request = {"workflow": record.workflow, "concurrencyKey": record.concurrency_key}
            over = await self._index("running", request) >= limit
        return codec.attempt_of(await self._run(run_id, "claim", {"owner": owner, "over": over}))

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        payload = {"owner": owner, "heldBy": held_by, "interrupted": interrupted}
        return codec.maybe_record(await self._run(run_id, "requeue", payload))

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        payload = {"owner": owner, "suspension": codec.suspension_wire(suspension)}
        return codec.suspended_of(await self._run(run_id, "suspend", payload))

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        payload = {
            "outcome": codec.outcome_wire(outcome),
            "onlyFrom": None if only_from is None else [status.value for status in only_from],
            "heldBy": held_by,
        }
        return codec.maybe_record(await self._run(run_id, "finish", payload))

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        return codec.maybe_record(await self._run(run_id, "cancel"))

    # -- the ready pool and the due-time index ------------------------------------------------------

    async def take_ready(
        self, owner: str, workflows: Mapping[str, Limits], limit: int, *, only: Collection[str] | None = None
    ) -> Taken:
        payload = {
            "owner": owner,
            "workflows": codec.limits_wire(workflows),
            "limit": limit,
            "only": None if only is None else list(only),
        }
        return codec.taken_of(await self._index("take_ready", payload))

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        return int(await self._index("wake_due", {"now": codec.when(now), "limit": limit}))

    async def next_wake(self) -> datetime | None:
        return codec.moment(await self._index("next_wake"))

    # -- events -------------------------------------------------------------------------------------

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        current = self.serving_run(run_id)
        if current is not None:
            current.append(events)  # the run's own object: written now, in order
        else:
            self._appends.add(run_id, events)

    async def _send_appends(self, run_id: str, events: list[NewEvent]) -> None:
        await self._call(calls.RUNS, run_id, "append", [codec.event_wire(event) for event in events])

    async def flush(self) -> None:
        await self._appends.flush()

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        return codec.page_of(await self._run(run_id, "read", {"after": after, "limit": limit}))

    # -- records ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        # A run's record does not change once it ended: the read a task makes right after its wait
        # saw the end (``runs.wait`` does) is answered with the record that wait's answer carried.
        ended, self._ended = self._ended, None
        if ended is not None and ended[0] is asyncio.current_task() and ended[1] == run_id:
            return codec.record_of(ended[2])
        return codec.maybe_record(await self._run(run_id, "get"))

    async def list(self, query: RunQuery) -> list[RunRecord]:
        return [codec.record_of(text) for text in await self._index("list", codec.query_wire(query))]

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        return int(await self._index("prune", {"before": codec.when(ended_before), "limit": limit}))

    # -- steps --------------------------------------------------------------------------------------

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        await self._run(run_id, "save_step", {"name": name, "value": value})

    async def load_steps(self, run_id: str) -> dict[str, str]:
        steps: dict[str, str] = await self._run(run_id, "load_steps")
        return steps

    # -- signals ------------------------------------------------------------------------------------

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        return codec.sent_of(await self._run(run_id, "signal", codec.signal_wire(signal)))

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        payload = {"owner": owner, "name": name, "step": step, "sentBy": codec.when(sent_by)}
        return codec.delivery_of(await self._run(run_id, "take_signal", payload))

    # -- schedules ----------------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        stored, created = await self._schedules("put", {"schedule": codec.schedule_json(schedule), "replace": replace})
        return codec.schedule_of(stored), bool(created)

    async def get_schedule(self, name: str) -> Schedule | None:
        text = await self._schedules("get", {"name": name})
        return None if text is None else codec.schedule_of(text)

    async def list_schedules(self) -> list[Schedule]:
        return [codec.schedule_of(text) for text in await self._schedules("list")]

    async def delete_schedule(self, name: str) -> bool:
        return bool(await self._schedules("delete", {"name": name}))

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        payload = {"name": name, "previous": codec.when(previous), "tick": codec.when(tick)}
        return bool(await self._schedules("advance", payload))

    # -- workers ------------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        stop: list[str] = await self._index(
            "heartbeat", {"worker": codec.worker_wire(worker), "running": list(running)}
        )
        return stop

    async def workers(self) -> list[WorkerInfo]:
        return [codec.worker_of(wire) for wire in await self._index("workers")]

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        payload = {"dead": list(dead), "owner": owner, "workflows": list(workflows)}
        return [codec.record_of(text) for text in await self._index("adopt", payload)]

    async def retire(self, worker_id: str) -> None:
        await self._index("retire", {"workerId": worker_id})


def _admission(answer: dict[str, Any], record: RunRecord) -> Admission:
    """The admission an ``admit`` operation answered, ``record`` the one sent when it answered bare."""
    if "record" not in answer:
        return Admission(record, created=True)
    return codec.admission_of(answer)

"""``RunObject``: the Durable Object of one run (named by its run id).

It stores the run (:class:`~flue_cloudflare.run_ledger.RunLedger`), answers the store's operations
on it, delivers its outbox, serves reads of the run over HTTP (so live readers wake on its own
writes), and is the run's only executor: its alarm drives the run (:mod:`flue_cloudflare.driver`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from flue_core.models import RunStatus, utc_now
from flue_core.store import NewEvent
from flue_cloudflare import calls, codec, debounce, driver
from flue_cloudflare.changes import polled
from flue_cloudflare.objects import FlueObject
from flue_cloudflare.run_ledger import INDEX, PARENT, RELEASE, RunLedger

log = logging.getLogger("flue.cloudflare")

#: Seconds before an undelivered outbox message is tried again.
REDELIVERY = 2.0
#: Seconds between two deliveries of what a long execution posts (the index's copy of its run).
COURIER = 0.5
#: Seconds an alarm waits for an execution by a waiting reader's call to stop (an alarm handler may
#: run 15 minutes on Cloudflare); it is armed again when it ends without.
HANDOVER_PATIENCE = 600.0
_UNKNOWN: Any = object()
#: The object whose run the current task executes (changes it makes are delivered when it stops).
_executing: contextvars.ContextVar[RunObject | None] = contextvars.ContextVar("flue_cloudflare_executing", default=None)


class RunObject(FlueObject):
    binding: ClassVar[str] = calls.RUNS

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.run_id = self.name
        self.ledger = RunLedger(self.sql, self.run_id, pool_in_index=not self.app.execute)
        self.alarm_at: float | None = _UNKNOWN  # epoch ms of the armed alarm, as far as this object knows
        self.in_alarm = False  # the alarm handler is running: the alarm is re-armed when it ends
        self.driving = False  # an event of this object (its alarm, a waiting reader's call) drives the run
        self.waiting_for_slot = False  # its workflow's concurrency limit is full; the limit object pokes it
        self.start_at: float | None = None  # epoch ms its rate limit has room for its first start
        self._deliver_now = True
        self._held_back = False  # the execution here posted messages that are not delivered yet

    # -- operations ---------------------------------------------------------------------------------

    async def _answer(self, result: Any) -> dict[str, Any]:
        changed, self.ledger.changed = self.ledger.changed, set()
        deliver, self._deliver_now = self._deliver_now, True
        await self.settle(changed, deliver=deliver)
        return {"r": result, "c": sorted(changed), "s": self.ledger.seq}

    async def settle(self, changed: set[str], *, deliver: bool = True) -> None:
        """After a change: tell this isolate's readers, deliver what the change put in the outbox (or
        leave it to the alarm), arm the alarm. Messages left from before are the alarm's to deliver:
        an operation that only reads does not wait for the index. What the run's execution here
        posts is sent when it stops (:meth:`drive`)."""
        posted, self.ledger.posted = self.ledger.posted, False
        if changed:
            self.app.notify(changed)
        if deliver and posted:
            if _executing.get() is self:
                self._held_back = True
            else:
                await self.deliver()
        await self.arm()

    def _op_admit(self, wire: dict[str, Any]) -> Any:
        # ``indexed``: the caller gave the index this admission itself, at the same time; the copy in
        # the outbox is delivered by the alarm (replaced by a newer one when the alarm takes the run).
        self._deliver_now = not wire.get("indexed", False)
        admission = self.ledger.admit(codec.new_run_of(wire["run"]), keyed=wire["keyed"])
        if wire.get("bare") and admission.created:
            return {"created": True}  # the record is the one the caller sent, which it keeps
        return codec.admission_wire(admission)

    def _op_reindex(self, wire: Any) -> bool:
        """Send the index the run's row again (it holds a provisional copy of an admission)."""
        state = self.ledger.state()
        if state is None:
            return False
        self.ledger.resend_index()
        return True

    def _op_claim(self, wire: dict[str, Any]) -> Any:
        return codec.attempt_wire(self.ledger.claim(wire["owner"], over_limit=wire["over"]))

    def _op_requeue(self, wire: dict[str, Any]) -> Any:
        return _record(self.ledger.requeue(wire["owner"], wire["heldBy"], interrupted=wire.get("interrupted", False)))

    def _op_suspend(self, wire: dict[str, Any]) -> Any:
        return codec.suspended_wire(self.ledger.suspend(wire["owner"], codec.suspension_of(wire["suspension"])))

    def _op_finish(self, wire: dict[str, Any]) -> Any:
        only = wire["onlyFrom"]
        outcome = codec.outcome_of(wire["outcome"])
        record = self.ledger.finish(outcome, None if only is None else {RunStatus(s) for s in only}, wire["heldBy"])
        return _record(record)

    def _op_cancel(self, wire: Any) -> Any:
        # An execution in progress here sees the request and stops (driver: it must not be cancelled
        # from this event, which it would then go on running for).
        return _record(self.ledger.request_cancel())

    def _op_take(self, wire: dict[str, Any]) -> Any:
        return _record(self.ledger.take(wire["owner"]))

    def _op_wake(self, wire: dict[str, Any]) -> Any:
        return self.ledger.wake(codec.moment(wire["now"]))

    def _op_adopt(self, wire: dict[str, Any]) -> Any:
        return _record(self.ledger.adopt(wire["owner"], wire["previous"]))

    def _op_child_ended(self, wire: dict[str, Any]) -> Any:
        return self.ledger.child_ended(wire["child"])

    def _op_append(self, wire: list[dict[str, Any]]) -> None:
        self.ledger.append([codec.event_of(event) for event in wire])

    def _op_read(self, wire: dict[str, Any]) -> Any:
        return codec.page_wire(self.ledger.read(wire["after"], wire["limit"]))

    def _op_get(self, wire: Any) -> Any:
        return _record(self.ledger.get())

    def _op_save_step(self, wire: dict[str, Any]) -> None:
        self.ledger.save_step(wire["name"], wire["value"])

    def _op_load_steps(self, wire: Any) -> dict[str, str]:
        return self.ledger.load_steps()

    def _op_signal(self, wire: dict[str, Any]) -> Any:
        return codec.sent_wire(self.ledger.send_signal(codec.signal_of(wire)))

    def _op_take_signal(self, wire: dict[str, Any]) -> Any:
        delivery = self.ledger.take_signal(wire["owner"], wire["name"], wire["step"], codec.moment(wire.get("sentBy")))
        return codec.delivery_wire(delivery)

    async def _op_wait(self, wire: dict[str, Any]) -> Any:
        """Answer once the run changed after change ``since``, or after ``timeout`` seconds (looking
        on timers of its own: see :mod:`flue_cloudflare.changes`). ``drive``: the caller waits for
        the run's end (``?wait=result``), so a run still in line is executed here and now, rather
        than once the alarm rings; the alarm stays armed meanwhile (see :meth:`alarm`)."""
        if wire.get("drive") and driver.takes_at_once(self):
            try:
                await self.drive(self.app.runtime, deliver=False)
                state = self.ledger.state()
                if state is None or not state.record.finished:
                    await self._deliver_held_back()
                # else the index hears of the end from the alarm, armed since admission, after this answer
            except Exception:  # the alarm takes the run up where this left it
                log.exception("flue: run %s could not be executed for its waiting reader", self.run_id)
        await polled(lambda: self.ledger.seq > wire["since"], wire["timeout"])
        state = self.ledger.state()
        if state is not None and state.record.finished:
            return {"ended": codec.record_json(state.record)}  # what the waiter reads next
        return self.ledger.seq

    async def _op_prune(self, wire: dict[str, Any]) -> bool:
        if not self.ledger.prunable(codec.moment(wire["before"])):
            return False
        await self.sql.storage.deleteAll()
        await self.sql.storage.deleteAlarm()
        self.ledger.forget()
        self.alarm_at = None
        return True

    def _op_fold(self, wire: dict[str, Any]) -> Any:
        """Fold a debounced start into this run if it is still pending (creating it first from its
        admission ``wire["admission"]`` if that has not reached it yet); ``None`` when it is not."""
        if self.ledger.state() is None:
            self.ledger.admit(codec.new_run_of(wire["admission"]), keyed=True)
        return _record(debounce.fold(self.ledger, wire))

    def _op_slot_granted(self, wire: Any) -> bool:
        """The concurrency limit of the run's workflow gave it a slot: take it if still waiting."""
        state = self.ledger.state()
        wanted = state is not None and state.in_pool
        if wanted:
            self.waiting_for_slot = False  # settle() arms the alarm: the run is taken at once
        return wanted

    def append(self, events: Sequence[NewEvent]) -> None:
        """Store events of the run executing here, at once (``RunStore.append`` from inside)."""
        self.ledger.append(events)
        changed, self.ledger.changed = self.ledger.changed, set()
        if changed:
            self.app.notify(changed)

    # -- the outbox and the alarm -------------------------------------------------------------------

    async def deliver(self) -> bool:
        """Send every message of the outbox; ``True`` when none is left."""
        for kind, target, payload in self.ledger.outbox():
            try:
                if kind == INDEX:
                    await calls.call(self.stub(calls.INDEX, calls.INDEX_NAME), "upsert", codec.loads(payload))
                elif kind == PARENT:
                    await calls.call(self.stub(calls.RUNS, target), "child_ended", codec.loads(payload))
                elif kind == RELEASE:
                    message = codec.loads(payload)  # from before keys, the target was the workflow
                    message["cap"] = driver.limits(self.app.runtime, message.get("workflow", target)).concurrency
                    await calls.call(self.stub(calls.LIMITS, target), "release", message)
            except Exception:
                log.exception("flue: run %s could not deliver its %s message; it is retried", self.run_id, kind)
                continue
            self.ledger.delivered(kind, target, payload)
        return not self.ledger.outbox()

    def _outbox_beyond_index(self) -> bool:
        """Whether the outbox holds more than the index's copy, which the run's next change replaces
        (so an alarm about to take the run sends only the newer one)."""
        return any(kind != INDEX for kind, _, _ in self.ledger.outbox())

    async def arm(self) -> None:
        """Set the alarm to when the object must act next (or clear it); left alone while the alarm
        handler runs, which arms it when it ends, while a waiting reader's call executes the run (the
        alarm of its admission stays armed until the execution stops), and while it is due and
        wanted at once."""
        if self.in_alarm:
            return
        armed = self.alarm_at
        if self.driving and armed not in (None, _UNKNOWN):
            return
        wanted = driver.next_alarm(self)
        now = utc_now().timestamp() * 1000
        if self.driving:
            pass  # what the execution posts is delivered when it stops
        elif self._held_back:
            wanted = now  # what it posted, the alarm delivers at once
        elif self.ledger.outbox():
            wanted = now + REDELIVERY * 1000 if wanted is None else min(wanted, now + REDELIVERY * 1000)
        if wanted == armed or (wanted is not None and armed not in (None, _UNKNOWN) and armed <= wanted <= now):
            return
        await self._set_alarm(wanted)
        self.alarm_at = wanted

    async def drive(self, runtime: Any, *, deliver: bool = True) -> None:
        """Act on the run (:func:`flue_cloudflare.driver.drive`), one event at a time. The changes its
        execution makes are sent to the index and its parent every :data:`COURIER` seconds while it
        goes on, and when it stops (ends, waits or is handed back): the latest copy, not one per
        change. Without ``deliver`` that last delivery is left to the alarm, kept armed for it."""
        self.driving = True
        token = _executing.set(self)
        courier = asyncio.ensure_future(self._courier())
        try:
            await driver.drive(self, runtime)
        finally:
            courier.cancel()
            _executing.reset(token)
            self.driving = False
        if deliver:
            await self._deliver_held_back()

    async def _courier(self) -> None:
        while True:
            await asyncio.sleep(COURIER)
            await self._deliver_held_back()

    async def _deliver_held_back(self) -> None:
        if self._held_back:
            self._held_back = False
            await self.deliver()

    async def alarm(self, *args: Any) -> None:
        self.alarm_at = None  # this alarm is spent unless set again
        self.in_alarm = True
        try:
            with calls.serving(self):
                runtime = await self.app.open(self.env)
                # A waiting reader's call executing the run keeps this alarm in hand until it is
                # done, so that it rings again should the isolate die meanwhile (past a handler's
                # time, it is armed again at once as this one ends).
                if self.driving and not await polled(lambda: not self.driving, HANDOVER_PATIENCE):
                    return
                if self._outbox_beyond_index():  # e.g. a slot to give back before taking one again
                    await self.deliver()
                if self.app.execute:
                    await self.drive(runtime)
        finally:
            self.in_alarm = False
            with calls.serving(self):
                await self.deliver()
                await self.arm()

    # -- HTTP ---------------------------------------------------------------------------------------

    async def fetch(self, request: Any) -> Any:
        """``GET|HEAD /runs/<id>`` (record, catch-up, long-poll, SSE), forwarded by the Worker."""
        with calls.serving(self):
            return await self.app.serve_here(request, self.env)


def _record(record: Any) -> Any:
    return None if record is None else codec.record_json(record)

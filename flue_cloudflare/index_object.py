"""``IndexObject``: the one Durable Object that knows every run (see :mod:`flue_cloudflare.index_ledger`).

It answers listings and idempotency keys from its own storage. For the operations that change runs
it finds (the ready pool, due wake-ups, runs of dead workers, runs to prune) it only picks the
candidates: each change is made by the run's own object, atomically there, and a candidate that
changed meanwhile is skipped. Taking from the pool and adopting are done one at a time (a lock in
the object), so concurrency limits and adoption hold when several workers ask at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar


from flue_core.models import utc_now
from flue_cloudflare import calls, codec, debounce, index_pool
from flue_cloudflare.changes import PollingLock
from flue_cloudflare.index_ledger import IndexLedger
from flue_cloudflare.objects import FlueObject


#: Seconds after which a provisional row whose run has not sent its own is looked into.
SWEEP_AFTER = 30.0


class IndexObject(FlueObject):
    binding: ClassVar[str] = calls.INDEX

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.ledger = IndexLedger(self.sql)
        self.sql.script(debounce.SCHEMA)
        self._taking = PollingLock()
        self._changed: set[str] = set()
        # Whether the sweep's alarm is armed (``None``: not known yet). Only this object sets it, so
        # once known it is kept here rather than asked of storage at every admission.
        self._sweeping: bool | None = None

    async def _answer(self, result: Any) -> dict[str, Any]:
        changed, self._changed = self._changed, set()
        return {"r": result, "c": sorted(changed)}

    async def _run(self, run_id: str, op: str, payload: Any) -> Any:
        answer = await calls.call(self.stub(calls.RUNS, run_id), op, payload)
        self._changed.update(answer.get("c") or ())
        return answer.get("r")

    # -- copies, keys and listings ------------------------------------------------------------------

    def _op_upsert(self, row: dict[str, Any]) -> None:
        self.ledger.upsert(row)
        debounce.settled(self.sql, row)

    async def _op_provisional(self, row: dict[str, Any]) -> None:
        self.ledger.provisional(row)
        await self._sweep_later()

    def _op_withdraw(self, wire: dict[str, Any]) -> None:
        self.ledger.withdraw(wire["runId"], wire["record"])

    async def _op_bind_key(self, wire: dict[str, Any]) -> list[str]:
        bound = self.ledger.bind_key(wire["workflow"], wire["key"], wire["runId"], wire["admission"])
        if wire.get("row") is not None and bound[0] == wire["runId"]:
            await self._op_provisional(wire["row"])
        return list(bound)

    async def _sweep_later(self) -> None:
        if self._sweeping is None:
            self._sweeping = await self.sql.storage.getAlarm() is not None
        if not self._sweeping:
            await self._set_alarm((utc_now().timestamp() + SWEEP_AFTER) * 1000)
            self._sweeping = True

    async def alarm(self, *args: Any) -> None:
        """Look into provisional rows older than :data:`SWEEP_AFTER`: a run that exists sends its row
        again; the row of one that does not is removed."""
        self._sweeping = None  # spent, unless set again (or retried, should this raise)
        with calls.serving(self):
            cutoff = codec.when(utc_now() - timedelta(seconds=SWEEP_AFTER))
            assert cutoff is not None
            for run_id in self.ledger.provisional_before(cutoff):
                if not await self._run(run_id, "reindex", None):
                    row = self.ledger.row(run_id)
                    if row is not None:
                        self.ledger.withdraw(run_id, row["record"])
            if self.ledger.has_provisional():
                await self._set_alarm((utc_now().timestamp() + SWEEP_AFTER) * 1000)
                self._sweeping = True

    def _op_unbind_key(self, wire: dict[str, Any]) -> None:
        self.ledger.unbind_key(wire["workflow"], wire["key"], wire["runId"])
        if wire.get("debounce"):
            debounce.forget(self.sql, wire["runId"])

    async def _op_debounce(self, wire: dict[str, Any]) -> list[str]:
        """Create or fold a debounced admission (:func:`flue_cloudflare.debounce.decide`)."""
        what, run_id, admission = debounce.decide(self.sql, wire)
        if what == debounce.CREATE and wire.get("row") is not None:
            await self._op_provisional(wire["row"])
        return [what, run_id, admission]

    def _op_list(self, wire: dict[str, Any]) -> list[str]:
        return [codec.record_json(record) for record in self.ledger.list(codec.query_of(wire))]

    def _op_running(self, wire: dict[str, Any]) -> int:
        return self.ledger.running(wire["workflow"], wire.get("concurrencyKey"))

    def _op_next_wake(self, wire: Any) -> str | None:
        return self.ledger.next_wake()

    # -- the pool, wake-ups and pruning -------------------------------------------------------------

    async def _op_take_ready(self, wire: dict[str, Any]) -> dict[str, Any]:
        async def take_one(run_id: str) -> str | None:
            record: str | None = await self._run(run_id, "take", {"owner": wire["owner"]})
            return record

        async with self._taking:
            taken, retry_at = await index_pool.take(
                self.sql, codec.limits_of(wire["workflows"]), wire["limit"], wire["only"], utc_now(), take_one
            )
        return {"records": taken, "retryAt": codec.when(retry_at)}

    async def _op_wake_due(self, wire: dict[str, Any]) -> int:
        moved = 0
        for run_id in self.ledger.due(wire["now"], wire["limit"]):
            moved += bool(await self._run(run_id, "wake", {"now": wire["now"]}))
        return moved

    async def _op_prune(self, wire: dict[str, Any]) -> int:
        pruned = 0
        for run_id in self.ledger.ended_before(wire["before"], wire["limit"]):
            if await self._run(run_id, "prune", {"before": wire["before"]}):
                self.ledger.remove([run_id])
                pruned += 1
        return pruned

    # -- workers ------------------------------------------------------------------------------------

    def _op_heartbeat(self, wire: dict[str, Any]) -> list[str]:
        return self.ledger.heartbeat(codec.worker_of(wire["worker"]), wire["running"])

    def _op_workers(self, wire: Any) -> list[dict[str, Any]]:
        return [codec.worker_wire(worker) for worker in self.ledger.workers()]

    def _op_retire(self, wire: dict[str, Any]) -> None:
        self.ledger.retire(wire["workerId"])

    async def _op_adopt(self, wire: dict[str, Any]) -> list[str]:
        async with self._taking:
            adopted = []
            for run_id, previous in self.ledger.orphans(wire["dead"], wire["workflows"]):
                record = await self._run(run_id, "adopt", {"owner": wire["owner"], "previous": previous})
                if record is not None:
                    adopted.append(record)
            return adopted

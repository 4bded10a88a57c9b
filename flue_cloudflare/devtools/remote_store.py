"""A host's :class:`~flue_core.store.RunStore` whose every operation is performed by the Durable
Objects of a Worker on workerd: ``RemoteRunStore("http://127.0.0.1:<port>/store")``.

The Worker serves :func:`flue_cloudflare.testing.perform` at that URL. A local target over this store
executes runs on the host while their records, streams, steps, mailboxes, pool, wake-ups, schedules
and workers live in real Durable Object storage: how the unchanged contract suite proves the store's
rules on Cloudflare's storage. Stores of one URL in one process hear each other's changes (as
processes sharing a database would); other processes' changes are seen when read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx

from flue_core.errors import StoreUnavailable
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
from flue_cloudflare import codec
from flue_cloudflare.appends import AppendQueue
from flue_cloudflare.store_wire import OPS

_LISTENERS: dict[str, list[tuple[RemoteRunStore, ChangeListener]]] = {}


class RemoteRunStore(RunStore):
    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True)

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._appends = AppendQueue(lambda run_id, events: self._post("append", run_id, events))

    async def open(self, on_change: ChangeListener) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout)
        _LISTENERS.setdefault(self.url, []).append((self, on_change))

    async def close(self) -> None:
        if self._client is None:
            return
        try:
            await self._appends.flush()
        finally:
            _LISTENERS[self.url] = [entry for entry in _LISTENERS.get(self.url, []) if entry[0] is not self]
            client, self._client = self._client, None
            await client.aclose()

    async def _op(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if OPS[name].run and self._appends.pending(args[0]):
            await self._appends.drain(args[0])
        return await self._post(name, *args, **kwargs)

    async def _post(self, name: str, *args: Any, **kwargs: Any) -> Any:
        operation = OPS[name]
        if self._client is None:
            raise StoreUnavailable("The remote store is closed.")
        try:
            response = await self._client.post(
                f"{self.url}/{name}", content=codec.dumps(operation.request(*args, **kwargs))
            )
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"The Worker at {self.url} cannot be reached: {exc}") from exc
        if response.status_code != 200:
            raise StoreUnavailable(f"The Worker at {self.url} answered {response.status_code}: {response.text[:500]}")
        answer = codec.loads(response.text)
        if "e" in answer:
            codec.raise_error(answer["e"])
        if answer["c"]:
            for _, listener in list(_LISTENERS.get(self.url, ())):
                listener(answer["c"])
        return operation.result(answer["r"])

    # -- the contract, operation by operation --------------------------------------------------------

    async def admit(self, run: NewRun) -> Admission:
        return await self._op("admit", run)

    async def claim(self, run_id: str, owner: str, *, limit: int | None = None) -> Attempt | None:
        return await self._op("claim", run_id, owner, limit=limit)

    async def requeue(
        self, run_id: str, owner: str | None, *, held_by: str | None = None, interrupted: bool = False
    ) -> RunRecord | None:
        return await self._op("requeue", run_id, owner, held_by=held_by, interrupted=interrupted)

    async def suspend(self, run_id: str, owner: str, suspension: Suspension) -> Suspended | None:
        return await self._op("suspend", run_id, owner, suspension)

    async def finish(
        self,
        run_id: str,
        outcome: Outcome,
        *,
        only_from: Collection[RunStatus] | None = None,
        held_by: str | None = None,
    ) -> RunRecord | None:
        return await self._op("finish", run_id, outcome, only_from=only_from, held_by=held_by)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        return await self._op("request_cancel", run_id)

    async def take_ready(
        self, owner: str, workflows: Mapping[str, int | None], limit: int, *, only: Collection[str] | None = None
    ) -> list[RunRecord]:
        return await self._op("take_ready", owner, workflows, limit, only=only)

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        return int(await self._op("wake_due", now, limit))

    async def next_wake(self) -> datetime | None:
        return await self._op("next_wake")

    def append(self, run_id: str, events: Sequence[NewEvent]) -> None:
        if self._client is not None:
            self._appends.add(run_id, events)

    async def flush(self) -> None:
        await self._appends.flush()

    async def read(self, run_id: str, after: int | None, limit: int) -> EventPage | None:
        return await self._op("read", run_id, after, limit)

    async def get(self, run_id: str) -> RunRecord | None:
        return await self._op("get", run_id)

    async def list(self, query: RunQuery) -> list[RunRecord]:
        return await self._op("list", query)

    async def prune(self, ended_before: datetime, limit: int = 1000) -> int:
        return int(await self._op("prune", ended_before, limit))

    async def save_step(self, run_id: str, name: str, value: str) -> None:
        await self._op("save_step", run_id, name, value)

    async def load_steps(self, run_id: str) -> dict[str, str]:
        return await self._op("load_steps", run_id)

    async def send_signal(self, run_id: str, signal: NewSignal) -> SignalSent:
        return await self._op("send_signal", run_id, signal)

    async def take_signal(
        self, run_id: str, owner: str, name: str, step: str, *, sent_by: datetime | None = None
    ) -> Delivery | None:
        return await self._op("take_signal", run_id, owner, name, step, sent_by=sent_by)

    async def put_schedule(self, schedule: Schedule, *, replace: bool) -> tuple[Schedule, bool]:
        return await self._op("put_schedule", schedule, replace=replace)

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self._op("get_schedule", name)

    async def list_schedules(self) -> list[Schedule]:
        return await self._op("list_schedules")

    async def delete_schedule(self, name: str) -> bool:
        return bool(await self._op("delete_schedule", name))

    async def advance_schedule(self, name: str, previous: datetime | None, tick: datetime) -> bool:
        return bool(await self._op("advance_schedule", name, previous, tick))

    async def heartbeat(self, worker: WorkerInfo, running: Collection[str] = ()) -> list[str]:
        return await self._op("heartbeat", worker, running)

    async def workers(self) -> list[WorkerInfo]:
        return await self._op("workers")

    async def adopt(self, dead: Collection[str], owner: str, workflows: Collection[str]) -> list[RunRecord]:
        return await self._op("adopt", dead, owner, workflows)

    async def retire(self, worker_id: str) -> None:
        await self._op("retire", worker_id)

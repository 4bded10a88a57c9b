"""The Cloudflare target: every run is executed by its own Durable Object, woken by the object's alarm.

There is no process that lives on, so there are no loops: admission arms the new run's alarm in the
same storage transaction that stores it; the alarm takes the run (its object is its only worker) and
executes it; a durable sleep, a delayed start or a retry's back-off is the alarm set to the wake-up
time; a signal or the end of the last awaited child arms it at once. When the isolate executing a run
dies (eviction, a crash, a deploy), the alarm that was being handled rings again and the run is
resumed with its steps replayed, or failed ``run_interrupted`` (see :mod:`flue_cloudflare.driver`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ulid import ULID

from flue_core.execution import Executor
from flue_core.target import Target
from flue_cloudflare.changes import ObjectChanges
from flue_cloudflare.store import ObjectStore

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.models import RunRecord
    from flue_core.runtime import Runtime


class CloudflareTarget(Target):
    """Runs in Durable Objects (:class:`~flue_cloudflare.store.ObjectStore`), each executed by its own
    object. Selected by detection inside a Python Worker (``flue_cloudflare.plugin``).

    ``execute=False`` keeps runs in the objects without executing them there: workers elsewhere take
    them from the ready pool (used to test the store's rules on real Durable Objects).
    ``env`` is the Worker's bindings; :class:`~flue_cloudflare.FlueApp` binds it on first use.
    """

    name: ClassVar[str] = "cloudflare"

    def __init__(self, env: Any = None, *, execute: bool = True) -> None:
        self.execute = execute
        self.store = ObjectStore(env, limits_in_objects=execute)
        # The owner written on runs this isolate's objects execute. A new isolate (after a crash or an
        # eviction) has a new id, so the runs an old one held are recognised as interrupted.
        self.worker_id = f"obj_{ULID()}"
        self.executor: Executor | None = None

    def bind(self, env: Any) -> None:
        self.store.bind(env)

    async def open(self, runtime: Runtime) -> None:
        runtime.changes = ObjectChanges(self.store)
        self.executor = Executor(runtime, self.worker_id)
        await self.store.open(runtime.changes.notify)

    async def close(self) -> None:
        await self.store.close()

    def owner_for(self, workflow: Workflow) -> str | None:
        return None  # a new run waits in its object's pool of one until the object's alarm takes it

    def schedule(self, run: RunRecord) -> None:
        return None  # admission armed the run's alarm in the transaction that stored it

    def executing(self, run_id: str) -> bool:
        return self.executor is not None and run_id in self.executor.running

    async def cancel(self, run_id: str) -> bool:
        # Only the run's own object executes it; a cancel request reaches it there (RunObject).
        if self.executor is None or self.store.serving_run(run_id) is None:
            return False
        return self.executor.cancel(run_id)

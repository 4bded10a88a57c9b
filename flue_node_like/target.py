"""The local target: runs execute as tasks of this long-running process."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import TYPE_CHECKING, ClassVar

import anyio
from ulid import ULID

from flue_core.errors import ConfigurationError, StoreUnavailable
from flue_core.execution import Executor, finish_run, resume_adopted
from flue_core.models import RunError, RunRecord, RunStatus, utc_now
from flue_core.scheduler import run_schedules, sync_declared_schedules
from flue_core.store import CANCELS, READY, Attempt, Outcome, RunStore
from flue_core.target import AdmissionClaim, Target
from flue_node_like.backlog import CLAIMED, TAKEN, Backlog, Reader
from flue_node_like.liveness import is_dead, this_worker
from flue_node_like.outage import Outage

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

STORE_ENV = "FLUE_STORE"
DEFAULT_STORE = "sqlite:///.flue/flue.db"


class LocalTarget(Target):
    """Executes runs in this process on anyio, at most ``concurrency`` at a time.

    ``store`` is a store URL (``sqlite:///path.db``, ``memory://``...) or a :class:`RunStore`; by
    default ``FLUE_STORE`` or ``sqlite:///.flue/flue.db`` under the working directory.

    The target executes the runs admitted through it at once, and takes runs from the store's ready
    pool (runs admitted by processes that execute nothing, runs woken from a wait, runs of workflows
    with a concurrency limit) whenever it has room, woken by the store's notifications and, at the
    latest, at the next due wake-up time. Every ``sweep_interval`` seconds it renews its lease,
    applies cancels made by other processes and adopts runs of workers that died or hung (once their
    ``lease`` of seconds ran out; on this host at once when their process exited). It also admits the
    ticks of schedules. On close, running runs get ``shutdown_grace`` seconds to finish; the rest are
    handed back to the ready pool, to resume in the next process.

    With ``execute=False`` the target only admits (a web process, say): runs go to the ready pool
    for worker processes, and nothing executes here. With ``adopt=False`` it executes only runs
    admitted through it and leaves other workers' runs, the ready pool and schedules alone (for
    short-lived tools such as the CLI).
    """

    name: ClassVar[str] = "local"

    def __init__(
        self,
        store: str | RunStore | None = None,
        *,
        concurrency: int = 16,
        lease: float = 30.0,
        sweep_interval: float = 2.0,
        shutdown_grace: float = 10.0,
        adopt: bool = True,
        execute: bool = True,
    ) -> None:
        if concurrency < 1 or lease <= 0 or sweep_interval <= 0 or shutdown_grace < 0:
            raise ConfigurationError("concurrency >= 1, lease > 0, sweep_interval > 0 and shutdown_grace >= 0.")
        self._store_spec = store if store is not None else os.environ.get(STORE_ENV, DEFAULT_STORE)
        if isinstance(self._store_spec, RunStore):
            self.store = self._store_spec
        self.concurrency = concurrency
        self.lease = lease
        self.sweep_interval = sweep_interval
        self.shutdown_grace = shutdown_grace
        self.adopt = adopt
        self.execute = execute
        self.worker_id: str | None = None
        self._runtime: Runtime | None = None
        self._executor: Executor | None = None
        self._backlog: Backlog[_Work] | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._inflight = 0
        self._pool_unseen = False  # the pull loop left ready runs in the pool for want of room
        self._admitted: set[str] = set()  # with adopt=False: the runs this target may take from the pool
        self._local: set[str] = set()  # runs queued for or executing in this process
        self._unsettled: set[str] = set()  # runs whose execution the store failed: see _settle
        self._outage = Outage()

    async def open(self, runtime: Runtime) -> None:
        if isinstance(self._store_spec, str):
            self.store = runtime.stores.create(self._store_spec)
        self._runtime = runtime
        self._closing = False
        self._inflight = 0
        await self.store.open(runtime.changes.notify)
        runtime.changes.attach(self.store.interest)
        if not self.execute:
            return
        tasks = anyio.create_task_group()
        entered = False
        try:
            worker = this_worker(f"wkr_{ULID()}")
            await self.store.heartbeat(worker)
            self.worker_id, self._worker = worker.worker_id, worker
            self._executor = Executor(runtime, worker.worker_id)
            backlog = Backlog[_Work]()
            await tasks.__aenter__()
            entered = True
            self._backlog, self._tasks = backlog, tasks
            try:
                for _ in range(self.concurrency):
                    tasks.start_soon(self._work, backlog.reader())
            finally:
                backlog.close_readers()
            tasks.start_soon(self._maintain)
            tasks.start_soon(self._apply_cancels)
            await self._recover()
            tasks.start_soon(self._pull)
            if self.adopt:
                await sync_declared_schedules(runtime)
                tasks.start_soon(run_schedules, runtime, self.sweep_interval)
        except BaseException:  # leave nothing behind: the host only sees the error
            self._tasks = self._backlog = None
            if entered:
                tasks.cancel_scope.cancel()
                await tasks.__aexit__(None, None, None)
            with anyio.CancelScope(shield=True):
                runtime.changes.attach(None)
                await self.store.close()
            raise

    @property
    def store_patience(self) -> float:  # type: ignore[override]
        """An executing run waits out a store outage for up to a lease: past it another worker may
        take the run over anyway."""
        return self.lease

    def owner_for(self, workflow: Workflow) -> str | None:
        return super().owner_for(workflow) if self.execute else None

    def claim_at_admission(self, workflow: Workflow) -> AdmissionClaim | None:
        # Only into a free slot, so a run claimed at admission starts at once (never "running" while it
        # waits for room), and only where the store claims in the admission's own write.
        if self._backlog is None or self._closing or self.owner_for(workflow) is None:
            return None
        if not self.store.capabilities.claims_on_admit or self._inflight >= self.concurrency:
            return None
        self._inflight += 1
        return _Slot(self)

    def schedule(self, run: RunRecord) -> None:
        if self._closing:
            raise RuntimeError("The local target is not accepting runs (it is shutting down).")
        if not self.execute:
            return  # the run is in the ready pool; the store tells the workers
        if self._backlog is None or self._runtime is None:
            raise RuntimeError("The local target is not accepting runs (it is closed).")
        if not self.adopt:
            self._admitted.add(run.run_id)
        workflow = self._runtime.registry.get(run.workflow)
        if run.status == RunStatus.QUEUED and workflow is not None and self.owner_for(workflow) is not None:
            self._enqueue(run, run.priority)
        # Otherwise it is a delayed start or in the ready pool: the pull loop takes it when it can.

    def _enqueue(self, run: RunRecord, place: int = TAKEN) -> None:
        """Execute a run owned by this worker as soon as an executor task is free: one this process
        admitted in its priority's place, one it took from the pool or adopted (holding a slot of
        its workflow's limits meanwhile) before those."""
        assert self._backlog is not None
        self._inflight += 1
        self._local.add(run.run_id)
        self._backlog.put(place, (run.run_id, run.workflow, None))

    def _freed(self, run_id: str | None = None) -> None:
        """A slot became free: look at the ready pool if runs were left there for want of room."""
        self._inflight -= 1
        if run_id is not None:
            self._local.discard(run_id)
        if self._pool_unseen and self._inflight < self.concurrency and self._runtime is not None:
            self._pool_unseen = False
            self._runtime.changes.notify((READY,))

    async def cancel(self, run_id: str) -> bool:
        return self._executor is not None and self._executor.cancel(run_id)

    async def close(self) -> None:
        if not self.execute:
            with anyio.CancelScope(shield=True):
                await self._close_store()
            return
        if self._tasks is None:
            return
        self._closing = True
        assert self._backlog is not None and self._executor is not None
        self._backlog.close()
        tasks, self._tasks = self._tasks, None
        executor = self._executor
        # Every step below runs however this method is left: a host whose own shutdown is a
        # cancellation (Ctrl-C cancels the main task) still gets the grace period (shielded), and a
        # second cancellation (a second Ctrl-C) that cuts the grace short still ends the runs and
        # closes the store, whose connection thread would otherwise keep the interpreter alive.
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.shutdown_grace):
                while executor.running:
                    await anyio.sleep(0.02)
        finally:
            tasks.cancel_scope.cancel()  # runs still going are handed back or ended by the executor
            try:
                await tasks.__aexit__(None, None, None)  # outside any scope of ours: anyio requires it
            finally:
                with anyio.CancelScope(shield=True):
                    await self._release_store()

    async def _release_store(self) -> None:
        try:
            await self.store.flush()
            if self.worker_id is not None:
                await self.store.retire(self.worker_id)  # its queued runs become adoptable
        finally:
            await self._close_store()

    async def _close_store(self) -> None:
        if self._runtime is not None:
            self._runtime.changes.attach(None)
        await self.store.close()

    # -- tasks --------------------------------------------------------------------------------------

    async def _work(self, backlog: Reader[_Work]) -> None:
        assert self._executor is not None and self._runtime is not None
        async with backlog:
            while True:
                try:
                    run_id, workflow, attempt = await backlog.receive()
                except anyio.EndOfStream:
                    return
                if self._closing and attempt is None:
                    continue  # left queued; adoptable once this worker retires (a claimed one executes)
                try:
                    await self._executor.execute(run_id, workflow, attempt)
                except StoreUnavailable as exc:  # the run is settled once the store answers again
                    self._outage.failed(exc)
                    self._unsettled.add(run_id)
                except Exception:
                    log.exception("flue: executing run %s failed inside the runtime", run_id)
                    error = RunError(code="internal_error", message="The runtime failed while executing the run.")
                    with anyio.CancelScope(shield=True):
                        try:
                            outcome = Outcome(RunStatus.FAILED, utc_now(), error=error)
                            await finish_run(self._runtime, run_id, outcome, held_by=self.worker_id)
                        except Exception:
                            log.exception("flue: could not end run %s", run_id)
                finally:
                    # Room for a run of the ready pool: worth a look when the pull loop last left runs
                    # there for want of room (not after every run: a look costs store reads), or when
                    # a run of a limited workflow may now go.
                    self._freed(run_id)
                    wf = self._runtime.registry.get(workflow)
                    if wf is not None and wf.limits.limited:
                        self._runtime.changes.notify((READY,))

    async def _pull(self) -> None:
        """Take runs from the ready pool and wake due runs (due by the runtime's clock), when told to and
        when the next one is due."""
        assert self._runtime is not None and self.worker_id is not None
        store, runtime = self.store, self._runtime
        with runtime.changes.watch(READY) as watch:
            while True:
                wait = self.sweep_interval
                try:
                    # The pool first: a run that became ready is on its way before due runs are woken
                    # (waking one makes the store say READY again, so it is taken at the next turn).
                    room = self.concurrency - self._inflight
                    if self.adopt or self._admitted:
                        self._pool_unseen = room <= 0
                        if room > 0:
                            limits = {wf.name: wf.limits for wf in runtime.registry}
                            only = None if self.adopt else self._admitted
                            taken = await store.take_ready(self.worker_id, limits, room, only=only)
                            self._pool_unseen = len(taken.records) >= room  # full again: more may be waiting
                            for record in taken.records:
                                self._enqueue(record)
                            if taken.retry_at is not None:  # runs wait for a rate limit: look again then
                                wait = min(wait, max((taken.retry_at - runtime.clock.now()).total_seconds(), 0.001))
                    due = await store.next_wake()
                    if due is not None and due <= runtime.clock.now():
                        await store.wake_due(runtime.clock.now())
                        due = await store.next_wake()
                    if due is not None:
                        wait = min(wait, max((due - runtime.clock.now()).total_seconds(), 0.001))
                    if self._pool_unseen and self._inflight < self.concurrency:
                        # Runs ended while the take was on its way, and nobody else will say so: look again.
                        self._pool_unseen = False
                        wait = 0
                except StoreUnavailable as exc:
                    self._outage.failed(exc)
                except Exception:
                    log.exception("flue: taking runs from the ready pool failed; retrying")
                await watch.wait(wait)

    async def _apply_cancels(self) -> None:
        """Stop runs executing here as soon as any process asks to cancel them (see ``CANCELS``)."""
        assert self._runtime is not None and self._executor is not None
        with self._runtime.changes.watch(CANCELS) as watch:
            while True:
                await watch.wait(math.inf)
                for run_id in self._executor.running:
                    try:
                        record = await self.store.get(run_id)
                    except Exception:
                        log.exception("flue: checking run %s for a cancel failed", run_id)
                        continue
                    if record is not None and (record.cancel_requested or record.finished):
                        await self.cancel(run_id)

    async def _maintain(self) -> None:
        while True:
            await anyio.sleep(min(self.sweep_interval, self.lease / 3))
            try:
                self._worker.heartbeat_at = time.time()
                assert self._executor is not None
                for run_id in await self.store.heartbeat(self._worker, self._executor.running):
                    await self.cancel(run_id)  # cancelled elsewhere, or adopted by a worker that judged us dead
                await self._settle()
                await self._recover()
                self._outage.over()
            except StoreUnavailable as exc:
                self._outage.failed(exc)
            except Exception:
                log.exception("flue: lease renewal or recovery sweep failed; retrying")

    async def _settle(self) -> None:
        """Take up runs whose execution here ended in a store failure (its claim, a wait or its end
        may or may not have been written): those the store says this worker still holds are resumed
        like adopted runs, the others are someone else's now."""
        assert self._runtime is not None
        for run_id in list(self._unsettled):
            if run_id in self._local:
                continue
            record = await self.store.get(run_id)
            if record is not None and not record.finished:
                stop = await self.store.heartbeat(self._worker, [run_id])
                if run_id not in stop or record.cancel_requested:
                    await resume_adopted(self._runtime, [record], self._enqueue, reason="store")
            self._unsettled.discard(run_id)

    async def _recover(self) -> None:
        assert self._runtime is not None and self.worker_id is not None
        if not self.adopt:
            return
        dead = [w.worker_id for w in await self.store.workers() if w.worker_id != self.worker_id and is_dead(w, self.lease)]
        adopted = await self.store.adopt(dead, self.worker_id, self._runtime.registry.names)
        if adopted:
            log.info("flue: adopted %d unfinished run(s) from stopped workers", len(adopted))
            await resume_adopted(self._runtime, adopted, self._enqueue)


#: What the executor tasks receive: a run to claim and execute, or one claimed at admission.
_Work = tuple[str, str, Attempt | None]


class _Slot(AdmissionClaim):
    """An executor slot of a :class:`LocalTarget`, reserved for a run claimed at admission."""

    __slots__ = ("_target", "owner")

    def __init__(self, target: LocalTarget) -> None:
        assert target.worker_id is not None
        self._target = target
        self.owner = target.worker_id

    def start(self, attempt: Attempt) -> None:
        target = self._target
        if target._closing or target._backlog is None:
            target._freed(attempt.record.run_id)
            raise RuntimeError("The local target is not accepting runs (it is shutting down).")
        if not target.adopt:
            target._admitted.add(attempt.record.run_id)
        target._local.add(attempt.record.run_id)
        target._backlog.put(CLAIMED, (attempt.record.run_id, attempt.record.workflow, attempt))

    def release(self) -> None:
        self._target._freed()

"""The test environment: the application's workflows on a store of the test's own, executed in this
process under a virtual clock the test moves forward."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import anyio

from flue_core import runs, workflows
from flue_core.definition import Workflow
from flue_core.discovery import WorkflowSource
from flue_core.errors import ConfigurationError, RunCancelled, RunFailed, RunNotFound
from flue_core.models import Event, RunReceipt, RunRecord, RunStatus, SignalReceipt, format_timestamp, utc_now
from flue_core.runtime import Runtime
from flue_core.scheduler import tick
from flue_core.store import RunStore
from flue_core.testkit.clock import VirtualClock, checked_time
from flue_core.testkit.doubles import StepDoubles
from flue_core.testkit.errors import InvalidTimeAdvance, RunStuck, SettleTimeout, UnexpectedRunEnd
from flue_core.testkit.plugin import EnvironmentPlugin
from flue_core.testkit.progress import busy, next_due, outcome, state, unfinished

#: Moves at one instant after which something that stays due is a bug, not work.
MAX_MOVES_AT_ONCE = 100
#: Real seconds the environment waits for a sign of progress before looking at the store again.
POLL = 0.002

RunRef = RunReceipt | RunRecord | str


class TestEnvironment:
    """``async with TestEnvironment(workflows) as env:`` — the workflows on ``store`` (a private
    in-memory store by default; any store URL or :class:`RunStore`) under a :class:`VirtualClock`
    that starts at ``start`` (default: now) and moves only when the test moves it.

    Sleeps, signal-wait timeouts, delayed starts, retry back-offs (of runs and of steps) and
    schedule ticks fall due as the clock passes them: :meth:`advance` fires them in time order.
    With ``auto_skip`` (the default), :meth:`result`, :meth:`wait` and :meth:`waiting` move the clock
    themselves, to the next thing due, whenever every run is waiting. Every call that changes
    something (:meth:`start`, :meth:`signal`, :meth:`cancel`, :meth:`advance`) returns once the runs
    got as far as they can at the current virtual time (:meth:`settle`).

    ``env.steps`` replaces step functions by step name and records every step call
    (:class:`~flue_core.testkit.doubles.StepDoubles`); leaving the block with a double no step
    used raises :class:`~flue_core.testkit.errors.UnusedStepDouble`. ``env.runtime`` is the
    runtime (for ``schedules.create(..., runtime=env.runtime)``, say).
    """

    __test__ = False  # a helper, not a test class, whatever pytest makes of its name

    def __init__(
        self,
        workflows: WorkflowSource | Iterable[WorkflowSource] | None = None,
        *,
        store: str | RunStore = "memory://",
        start: datetime | None = None,
        auto_skip: bool = True,
        plugins: Iterable[object] = (),
        settle_timeout: float = 10.0,
        concurrency: int = 16,
    ) -> None:
        if not (isinstance(settle_timeout, (int, float)) and settle_timeout > 0):
            raise ConfigurationError(f"settle_timeout is a number of seconds > 0, not {settle_timeout!r}.")
        self.clock = VirtualClock(start if start is not None else utc_now())
        self.steps = StepDoubles()
        self.auto_skip = auto_skip
        self.settle_timeout = float(settle_timeout)
        self._activity: anyio.Event | None = None
        self._plugin = plugin = EnvironmentPlugin(self.clock, self._touch)
        self.runtime = Runtime(
            workflows,
            target="local",
            store=store,
            plugins=[plugin, *plugins],
            clock=self.clock,
            concurrency=concurrency,
            shutdown_grace=0.0,
        )
        if not len(self.runtime.registry):
            raise ConfigurationError(
                "The test environment has no workflows: pass them (TestEnvironment([my_workflow]) or a module"
                " name), or with pytest override the flue_workflows fixture."
            )
        self.runtime.step_doubles = self.steps

    async def __aenter__(self) -> TestEnvironment:
        self._activity = anyio.Event()
        await self.runtime.__aenter__()
        try:
            self._plugin.live.update(await unfinished(self.runtime))  # a store that held runs already
        except BaseException:
            await self.runtime.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: Any) -> None:
        await self.runtime.__aexit__(exc_type, *exc_info)
        if exc_type is None:
            self.steps.check_used()

    def _touch(self) -> None:
        if self._activity is not None:
            self._activity.set()

    # -- time ---------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The virtual time (what ``ctx.now()`` returns in the runs)."""
        return self.clock.now()

    async def advance(
        self,
        delta: timedelta | float | None = None,
        /,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> datetime:
        """Move the clock forward (``advance(hours=24)``, ``advance(timedelta(days=3))``,
        ``advance(90)`` seconds), firing everything that falls due on the way at its own time, in
        order; returns the new time. Moving back is an :class:`InvalidTimeAdvance`."""
        parts = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
        if isinstance(delta, timedelta):
            total = delta
        else:
            parts["seconds"] = seconds + (0 if delta is None else _number("delta", delta))
            total = timedelta()
        for name, value in parts.items():
            total += timedelta(**{name: _number(name, value)})
        if total < timedelta(0):
            raise InvalidTimeAdvance(
                f"Time only moves forward: cannot advance by {total}.", details={"seconds": total.total_seconds()}
            )
        return await self.advance_to(self.clock.now() + total)

    async def advance_to(self, when: datetime) -> datetime:
        """Move the clock forward to ``when`` (timezone-aware), like :meth:`advance`."""
        when = checked_time(when, "when")
        if when < self.clock.now():
            self.clock.move_to(when)  # raises InvalidTimeAdvance, saying what the clock shows
        await self.settle()
        moves = 0
        while True:
            due = await next_due(self.runtime, self.clock)
            if due is None or due > when:
                break
            moves = moves + 1 if due <= self.clock.now() else 0
            if moves > MAX_MOVES_AT_ONCE:
                raise SettleTimeout(f"Something stays due at {format_timestamp(due)} however often it is woken.")
            await self._move(max(due, self.clock.now()))
        await self._move(when)
        return self.clock.now()

    async def _move(self, when: datetime) -> None:
        self.clock.move_to(when)
        store = self.runtime.target.store
        for schedule in await store.list_schedules():
            await tick(self.runtime, schedule, when)
        while await store.wake_due(when) > 0:
            pass
        await self.settle()

    async def settle(self) -> None:
        """Return once nothing more can happen at the current virtual time: every run has ended or
        waits (for time, a signal or its children), none is queued or executing. Raises
        :class:`SettleTimeout` when runs keep executing for ``settle_timeout`` real seconds."""
        deadline = anyio.current_time() + self.settle_timeout
        quiet = 0
        while True:
            doing = await busy(self.runtime, self.clock, self.steps, self._plugin.live)
            if doing is None:
                quiet += 1
                if quiet >= 2:  # seen quiet twice, a turn of the event loop apart
                    return
                await anyio.sleep(0)
                continue
            quiet = 0
            if anyio.current_time() >= deadline:
                raise SettleTimeout(
                    f"After {self.settle_timeout} s, {doing} still (a step waiting for real I/O, or a"
                    " workflow that never reaches a durable wait?).",
                    details={"busy": doing},
                )
            self._activity = activity = anyio.Event()
            with anyio.move_on_after(POLL):
                await activity.wait()

    # -- runs ---------------------------------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow | str,
        input: Any = None,
        *,
        key: str | None = None,
        at: datetime | None = None,
        delay: float | None = None,
    ) -> RunReceipt:
        """``workflows.start`` on this environment, then :meth:`settle`: the run went as far as it can."""
        receipt = await workflows.start(workflow, input=input, key=key, at=at, delay=delay, runtime=self.runtime)
        await self.settle()
        return receipt

    async def run(self, run: RunRef) -> RunRecord:
        """The run's record as it is now (:class:`~flue_core.errors.RunNotFound` if there is none)."""
        run_id = _run_id(run)
        record = await runs.get(run_id, runtime=self.runtime)
        if record is None:
            raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
        return record

    async def wait(self, run: RunRef, *, skip: bool | None = None) -> RunRecord:
        """The run's final record, once it ended (whatever the outcome). With ``skip`` (default: the
        environment's ``auto_skip``) the clock moves to whatever falls due next while the run waits;
        without, or when nothing is due, :class:`RunStuck` says what the run waits for."""
        run_id = _run_id(run)
        while True:
            await self.settle()
            record = await self.run(run_id)
            if record.finished:
                return record
            await self._skip(record, skip, "end")

    async def result(self, run: RunRef, *, skip: bool | None = None) -> Any:
        """The run's result once it ended (see :meth:`wait`); raises :class:`RunFailed` (the workflow's
        traceback attached as a note) or :class:`RunCancelled` like ``runs.result``."""
        record = await self.wait(run, skip=skip)
        if record.status == RunStatus.COMPLETED:
            return record.result
        if record.status == RunStatus.CANCELLED:
            raise RunCancelled(f"Run {record.run_id} was cancelled.", details={"run_id": record.run_id})
        error = record.error
        failure = RunFailed(
            f"Run {record.run_id} failed: {error.message if error else 'unknown error'}",
            details={"run_id": record.run_id, "error": error.model_dump(exclude_none=True) if error else None},
        )
        if error is not None and error.traceback:
            failure.add_note(f"The workflow's traceback:\n{error.traceback}")
        raise failure

    async def waiting(
        self, run: RunRef, *, signal: str | None = None, kind: str | None = None, skip: bool | None = None
    ) -> RunRecord:
        """The run's record once it is ``waiting`` (for ``signal`` by that name, or for ``kind``:
        ``sleep``, ``signal``, ``children``, ``retry``). Raises :class:`UnexpectedRunEnd` if it ends
        first; with ``skip`` the clock moves on while it waits for something else (see :meth:`wait`)."""
        run_id = _run_id(run)
        expected = f"for signal {signal!r}" if signal else f"for {kind}" if kind else ""
        while True:
            await self.settle()
            record = await self.run(run_id)
            waiting_for = record.waiting_for
            if (
                record.status == RunStatus.WAITING
                and waiting_for is not None
                and (signal is None or (waiting_for.kind == "signal" and waiting_for.name == signal))
                and (kind is None or waiting_for.kind == kind)
            ):
                return record
            if record.finished:
                ended = UnexpectedRunEnd(
                    f"Run {run_id} ({record.workflow}) {outcome(record)}, while the test expected it to wait {expected}".rstrip()
                    + ".",
                    details={"run_id": run_id, "status": record.status.value, "error": _error(record), "result": record.result},
                )
                if record.error is not None and record.error.traceback:
                    ended.add_note(f"The workflow's traceback:\n{record.error.traceback}")
                raise ended
            await self._skip(record, skip, f"wait {expected}".strip())

    async def _skip(self, record: RunRecord, skip: bool | None, goal: str) -> None:
        """Move the clock to what falls due next, or say why the run will not ``goal``."""
        details = {"run_id": record.run_id, "status": record.status.value, "now": format_timestamp(self.clock.now())}
        where = f"Run {record.run_id} ({record.workflow}) does not {goal}: {state(record)}"
        waiting_for = record.waiting_for
        if record.status == RunStatus.WAITING and waiting_for is not None and waiting_for.kind == "children":
            children = [await self.run(child) for child in (waiting_for.run_ids or ())[:3]]
            where += "".join(f"; child {child.run_id} ({child.workflow}): {state(child)}" for child in children)
        where += f" (virtual time {details['now']})"
        if not (self.auto_skip if skip is None else skip):
            raise RunStuck(f"{where}. Move the clock (env.advance) or wait with skip=True.", details=details)
        due = await next_due(self.runtime, self.clock)
        if due is None:
            raise RunStuck(f"{where}, and nothing else is due in this environment.", details=details)
        await self.advance_to(due)

    async def signal(self, run: RunRef, name: str, data: Any = None, *, key: str | None = None) -> SignalReceipt:
        """``runs.signal`` on this environment, then :meth:`settle`."""
        receipt = await runs.signal(_run_id(run), name, data, key=key, runtime=self.runtime)
        await self.settle()
        return receipt

    async def cancel(self, run: RunRef) -> RunRecord:
        """``runs.cancel`` on this environment, then :meth:`settle`; the run's record."""
        await runs.cancel(_run_id(run), wait_for=0, runtime=self.runtime)
        await self.settle()
        return await self.run(run)

    async def events(self, run: RunRef, *types: str) -> list[Event]:
        """The run's events so far, in order; only those of ``types`` when given."""
        found = [event async for event in runs.events(_run_id(run), runtime=self.runtime)]
        return [event for event in found if not types or event.type in types]

    async def children(self, run: RunRef) -> list[RunRecord]:
        """The child runs the run started, oldest first."""
        found: list[RunRecord] = []
        cursor = None
        while True:
            page = await runs.list(parent=_run_id(run), cursor=cursor, limit=1000, runtime=self.runtime)
            found.extend(page.runs)
            cursor = page.next_cursor
            if cursor is None:
                return found[::-1]


def _run_id(run: RunRef) -> str:
    run_id = getattr(run, "run_id", run)
    if not isinstance(run_id, str):
        raise RunNotFound(f"{run!r} names no run: pass a receipt, a record or a run id.")
    return run_id


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidTimeAdvance(f"{name} must be a finite number, not {value!r}.", details={name: repr(value)})
    return value


def _error(record: RunRecord) -> dict[str, Any] | None:
    return None if record.error is None else record.error.model_dump(exclude_none=True)

"""Durable calls of a workflow: steps, sleeps, signal waits and child runs, recorded and replayed.

Each call is keyed by its name and occurrence in the run (``fetch``, ``fetch#2``...; Flue's own calls
use names starting with ``#``, which step names may not). What a call produced is stored under its
key before the call returns; an execution that replays the run finds it there and returns it again.

Two values are kept without a position of their own: ``ctx.now()`` (``#now``) and the markers of
``ctx.patched()`` (``#patch:<id>``). Reading them writes nothing at once; they are stored before the
next durable call stores anything, so a run never holds a result that depended on one it lost.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import TypeAdapter, ValidationError

from flue_core.attempt import AttemptControl, Lost
from flue_core.call_keys import NOW, PATCH, check_change_id, history_continues
from flue_core.errors import InvalidSignal, RunCancelled, RunFailed, SignalTimeout, StepError, StepTimeout, validation_errors
from flue_core.models import RunReceipt, RunRecord, RunStatus, WaitingFor, format_timestamp, parse_timestamp
from flue_core.plugins import scope
from flue_core.signals import check_signal_name, problems
from flue_core.snapshot import NotJSON, dumps, is_text, snapshot

if TYPE_CHECKING:
    from flue_core.clock import Clock
    from flue_core.definition import Workflow
    from flue_core.runtime import Runtime

MAX_STEP_NAME = 200
MAX_STEP_DELAY = 60.0
#: How far back through re-runs of re-runs a child run's parent is looked for.
MAX_RERUN_CHAIN = 100


class Calls:
    """The durable calls of one execution: numbering, replay and recording."""

    def __init__(self, runtime: Runtime, workflow: Workflow, control: AttemptControl, steps: dict[str, str]) -> None:
        self._runtime = runtime
        self._workflow = workflow
        self._control = control
        self._store = runtime.target.store
        self._steps = steps
        self._seen: Counter[str] = Counter()
        # #now and #patch values not stored yet, and the answers of ctx.patched: made on first use.
        self._notes: list[tuple[str, str]] | None = None
        self._patches: dict[str, bool] | None = None
        # A new attempt (a retry, a recovery) shows which steps it replayed; a resumption after a
        # wait continues the same attempt, whose stream already shows them.
        self._announce_replays = not control.resumed

    @property
    def run_id(self) -> str:
        return self._control.run_id

    def _key(self, base: str) -> str:
        self._seen[base] += 1
        count = self._seen[base]
        return base if count == 1 else f"{base}#{count}"

    def _stored(self, key: str) -> Any:
        text = self._steps.get(key)
        return None if text is None else json.loads(text)

    async def _save(self, key: str, value: Any) -> None:
        await self._save_text(key, dumps(value))

    async def _save_text(self, key: str, text: str) -> None:
        if self._notes:
            await self._write_notes()
        await self._control.patiently(lambda: self._store.save_step(self.run_id, key, text))
        self._steps[key] = text

    def _note(self, key: str, text: str) -> None:
        self._steps[key] = text
        if self._notes is None:
            self._notes = []
        self._notes.append((key, text))

    async def _write_notes(self) -> None:
        notes, self._notes = self._notes or [], None
        for key, text in notes:
            await self._control.patiently(lambda key=key, text=text: self._store.save_step(self.run_id, key, text))

    # -- values without a position: the time, patches ----------------------------------------------

    def now(self) -> datetime:
        key = self._key(NOW)
        stored = self._steps.get(key)
        if stored is not None:
            return parse_timestamp(json.loads(stored))
        now = self._runtime.clock.now()
        self._note(key, dumps(format_timestamp(now)))
        return now

    def patched(self, change: str) -> bool:
        check_change_id(change)
        if self._patches is None:
            self._patches = {}
        known = self._patches.get(change)
        if known is None:
            key = PATCH + change
            # Stored: this run passed here with the patch. Not stored while the history goes on past
            # this point: it passed here before the patch existed, and keeps the old path.
            known = key in self._steps or not history_continues(self._steps, self._seen)
            if known and key not in self._steps:
                self._note(key, "true")
            self._patches[change] = known
        return known

    # -- steps --------------------------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retries: int,
        timeout: float | None,
        backoff: float,
    ) -> Any:
        check_step(name, fn, retries, timeout, backoff)
        key = self._key(name)
        shown = {"name": name} if key == name else {"name": name, "key": key}
        stored = self._steps.get(key)
        if stored is not None:
            if self._announce_replays:
                self._control.write("step", {**shown, "replayed": True})
            return json.loads(stored)
        began = time.perf_counter()
        tries = 0
        doubles = self._runtime.step_doubles
        if doubles is not None:
            fn = doubles.stand_in(self.run_id, name, key, fn)
        while True:
            tries += 1
            try:
                with scope(self._runtime.pm.hook.flue_step_scope, run=self._control.record, step=key, try_number=tries):
                    value = await _call(fn, args, kwargs, timeout, key)
                break
            except Exception as exc:
                if tries > retries:
                    raise
                delay = min(backoff * 2 ** (tries - 1), MAX_STEP_DELAY)
                error = {"type": type(exc).__qualname__, "message": str(exc) or type(exc).__name__}
                self._control.write("step_retry", {**shown, "attempt": tries, "error": error, "delay": delay})
                await self._runtime.clock.sleep(delay)
        try:
            text = dumps(snapshot(value, f"step {key!r} result"))
        except NotJSON as exc:
            raise StepError(f"Step {key!r} returned a value JSON cannot carry: {exc}") from None
        await self._save_text(key, text)
        data = {**shown, "replayed": False, "durationMs": int((time.perf_counter() - began) * 1000)}
        if tries > 1:
            data["tries"] = tries
        self._control.write("step", data)
        return json.loads(text)

    # -- sleeps -------------------------------------------------------------------------------------

    async def sleep(self, *, seconds: float | None = None, until: datetime | None = None) -> None:
        key = self._key("#sleep")
        stored = self._stored(key)
        if stored is not None:
            until = parse_timestamp(stored["until"])
        else:
            until = _until(seconds, until, self._runtime.clock)
            await self._save(key, {"until": format_timestamp(until)})
        while self._runtime.clock.now() < until:
            await self._control.suspend(WaitingFor(kind="sleep"), until)

    # -- signals ------------------------------------------------------------------------------------

    async def wait_for_signal(self, name: str, *, timeout: float | None, model: Any) -> Any:
        check_signal_name(name)
        if model is None:
            model = self._workflow.signals.get(name)
        key = self._key(f"#signal:{name}")
        outcome = self._stored(key)
        if outcome is None:
            outcome = await self._receive(name, key, timeout)
        if outcome.get("timeout"):
            raise SignalTimeout(
                f"No signal {name!r} reached run {self.run_id} within {timeout} s.",
                details={"run_id": self.run_id, "name": name},
            )
        data = outcome["data"]
        if model is None:
            return data
        try:
            return TypeAdapter(model).validate_python(data)
        except ValidationError as exc:
            # The message lists the problems: a failed run's error keeps the message, not the details.
            errors = validation_errors(exc)
            raise InvalidSignal(
                f"Signal {name!r} does not match {getattr(model, '__name__', model)!r}: {problems(errors)}",
                details={"run_id": self.run_id, "name": name, "errors": errors},
            ) from None

    async def _receive(self, name: str, key: str, timeout: float | None) -> dict[str, Any]:
        deadline: datetime | None = None
        if timeout is not None:
            deadline_key = f"{key}/deadline"
            stored = self._stored(deadline_key)
            if stored is not None:
                deadline = parse_timestamp(stored["until"])
            else:
                deadline = _until(timeout, None, self._runtime.clock)
                await self._save(deadline_key, {"until": format_timestamp(deadline)})
        if self._notes:
            await self._write_notes()  # before the store saves the wait's outcome
        while True:
            control = self._control
            delivery = await control.exclusive(
                lambda: self._store.take_signal(self.run_id, control.owner, name, key, sent_by=deadline),
                lambda answer: None if answer is None else answer.next_index,
            )
            if delivery is None:
                raise Lost()
            if delivery.signal is not None:
                signal = delivery.signal
                outcome = {"signalId": signal.signal_id, "name": name, "data": signal.data}
                self._steps[key] = self._steps.get(key) or dumps(outcome)
                return outcome
            if deadline is not None and self._runtime.clock.now() >= deadline:
                outcome = {"timeout": True}
                await self._save(key, outcome)
                control.write("signal_timeout", {"name": name})
                return outcome
            await control.suspend(WaitingFor(kind="signal", name=name), deadline)

    # -- child runs ---------------------------------------------------------------------------------

    async def start_child(
        self, workflow: Workflow | str, *, input: Any, key: str | None, at: datetime | None, delay: float | None
    ) -> RunReceipt:
        from flue_core.admission import admit  # admission imports execution's neighbours; keep the arrow down

        call = self._key("#child")
        stored = self._stored(call)
        if stored is not None:
            return self._runtime.receipt_for(stored["runId"], stored["workflow"])
        receipt = await admit(
            self._runtime,
            workflow,
            input,
            key=key if key is not None else call,
            source="child",
            parent_run_id=self.run_id,
            at=at,
            delay=delay,
        )
        await self._save(call, {"runId": receipt.run_id, "workflow": receipt.workflow})
        self._control.write("child_started", {"runId": receipt.run_id, "workflow": receipt.workflow, "key": key})
        return receipt

    async def wait_for(self, children: list[RunReceipt | str]) -> list[Any]:
        ids = [child_run_id(child) for child in children]
        while True:
            records = [await self._child(run_id) for run_id in ids]
            unfinished = [record.run_id for record in records if not record.finished]
            if not unfinished:
                return [child_result(record) for record in records]
            await self._control.suspend(WaitingFor(kind="children", run_ids=unfinished), None)

    async def _child(self, run_id: str) -> RunRecord:
        record = await self._control.patiently(lambda: self._store.get(run_id))
        if record is None or not await self._is_parent(record.parent_run_id):
            raise StepError(
                f"Run {run_id!r} is not a child of run {self.run_id}: wait only for runs started with ctx.start_child.",
                details={"run_id": run_id},
            )
        return record


    async def _is_parent(self, parent_run_id: str | None) -> bool:
        """Whether ``parent_run_id`` is this run or a run it re-runs (a re-run takes over the
        children its predecessors started, see :mod:`flue_core.rerun`)."""
        if parent_run_id == self.run_id:
            return True
        rerun_of = self._control.record.rerun_of
        for _ in range(MAX_RERUN_CHAIN):
            if rerun_of is None:
                return False
            if rerun_of == parent_run_id:
                return True
            earlier = await self._control.patiently(lambda: self._store.get(rerun_of))  # noqa: B023
            rerun_of = None if earlier is None else earlier.rerun_of
        return False


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, key: str) -> Any:
    if timeout is None:
        value = fn(*args, **kwargs)
        return await value if inspect.isawaitable(value) else value
    with anyio.move_on_after(timeout):
        value = fn(*args, **kwargs)
        return await value if inspect.isawaitable(value) else value
    # Only the deadline ends the block without returning (an outer cancellation propagates).
    raise StepTimeout(f"Step {key!r} took longer than its {timeout} s timeout.", details={"step": key})


def check_step(name: str, fn: Any, retries: Any, timeout: Any, backoff: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_STEP_NAME or "#" in name or not is_text(name):
        raise StepError(f"A step needs a name of 1-{MAX_STEP_NAME} characters of valid Unicode without '#', not {name!r}.")
    if not callable(fn):
        raise StepError(f"Step {name!r}: {fn!r} is not callable.")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise StepError(f"Step {name!r}: retries must be an integer >= 0, not {retries!r}.")
    if timeout is not None and not (_finite(timeout) and timeout > 0):
        raise StepError(f"Step {name!r}: timeout must be a number of seconds > 0 or None, not {timeout!r}.")
    if not (_finite(backoff) and backoff >= 0):
        raise StepError(f"Step {name!r}: backoff must be a number of seconds >= 0, not {backoff!r}.")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _until(seconds: float | None, until: datetime | None, clock: Clock) -> datetime:
    if until is not None:
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise StepError(f"sleep_until needs a timezone-aware datetime, not {until!r}.")
        return until
    if not (_finite(seconds) and seconds >= 0):  # type: ignore[operator]
        raise StepError(f"A wait needs a finite number of seconds >= 0, not {seconds!r}.")
    try:
        return clock.now() + timedelta(seconds=seconds)  # type: ignore[arg-type]
    except OverflowError:
        raise StepError(f"A wait of {seconds!r} s ends after the last date Python can represent.") from None


def child_run_id(child: Any) -> str:
    if isinstance(child, RunReceipt):
        return child.run_id
    if isinstance(child, str) and child:
        return child
    raise StepError(f"wait_for takes a child's RunReceipt or run id, not {child!r}.")


def child_result(record: RunRecord) -> Any:
    if record.status == RunStatus.COMPLETED:
        return record.result
    if record.status == RunStatus.CANCELLED:
        raise RunCancelled(f"Child run {record.run_id} was cancelled.", details={"run_id": record.run_id})
    error = record.error
    raise RunFailed(
        f"Child run {record.run_id} failed: {error.message if error else 'unknown error'}",
        details={"run_id": record.run_id, "error": error.model_dump(exclude_none=True) if error else None},
    )

"""Replaying one run's history against new code, acting on nothing.

The workflow function runs with a context whose durable calls answer from the history: a call the
history holds returns what it returned then; a call it does not hold is where the run would act
again, and the check stops there (*parks* the call) instead of acting. Nothing is executed, sent,
started or written. The history's calls must be asked for in the order they were saved, except
calls in flight together (a task group's), which may come in any order among themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.lowlevel
from pydantic import TypeAdapter, ValidationError

from flue_core.call_keys import DEADLINE, NOW, PATCH, check_change_id, history_continues, positioned, split_key
from flue_core.context import RunContext
from flue_core.durable import check_step, child_result, child_run_id
from flue_core.errors import AdmissionError, SignalTimeout, StepError, validation_errors
from flue_core.models import RunReceipt, RunRecord, RunStatus, parse_timestamp, utc_now
from flue_core.public_url import run_url
from flue_core.replay.history import CHILD, RunHistory
from flue_core.replay.report import Divergence
from flue_core.signals import check_signal_name

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.discovery import WorkflowRegistry

#: Turns of the event loop without a durable call after which the replayed code is taken to be still.
QUIET_TURNS = 8
#: Real seconds one run's replay may take before it is reported as not checked through.
RUN_LIMIT = 10.0
SIGNAL = "#signal:"


@dataclass(frozen=True, slots=True)
class Asked:
    """What the new code asked for, in words, with what a run's wait is compared against."""

    kind: str
    text: str
    name: str | None = None
    run_ids: tuple[str, ...] = ()


class ReplayCalls:
    """The durable calls of one replayed execution (what :class:`RunContext` calls), answered from
    ``history`` and judged against it."""

    def __init__(self, history: RunHistory, workflow: Workflow, registry: WorkflowRegistry) -> None:
        self._history = history
        self._record = history.record
        self._workflow = workflow
        self._registry = registry
        self._steps = dict(history.calls)
        self._entries = [key for key, _ in history.calls if positioned(key)]
        self._position = {key: index for index, key in enumerate(self._entries)}
        self._asked = [False] * len(self._entries)
        self._low = 0  # the first entry not asked for yet
        self._seen: Counter[str] = Counter()
        self._patches: dict[str, bool] = {}
        self._activity = 0
        self.parked: Asked | None = None  # the first call the replay stopped at
        self.parked_calls: list[Asked] = []  # every one (calls in flight together stop side by side)
        self.divergence: Divergence | None = None
        self.incomplete: str | None = None
        self.done = False
        self.old_paths: list[str] = []
        self.new_paths: list[str] = []
        self.children_waits: list[frozenset[str]] = []  # the runs each wait_for asked for, met or not
        self.stopped = anyio.Event()

    # -- bookkeeping --------------------------------------------------------------------------------

    @property
    def replayed(self) -> int:
        return sum(self._asked)

    def _key(self, base: str) -> str:
        self._seen[base] += 1
        count = self._seen[base]
        return base if count == 1 else f"{base}#{count}"

    async def _ask(self, keys: list[str], asked: Asked) -> None:
        """Take ``keys`` (stored) as asked for; they must come after every entry saved before them."""
        self._activity += 1
        positions = [self._position[key] for key in keys if key in self._position]
        for position in positions:
            self._asked[position] = True
        while self._low < len(self._asked) and self._asked[self._low]:
            self._low += 1
        if positions and self._low < max(positions):
            await self._quiet()  # a call in flight beside this one may still ask for the earlier entry
            if self._low < max(positions):
                await self._diverge("call_mismatch", asked, position=self._low)

    def _continues(self) -> bool:
        return self._low < len(self._entries)

    async def _quiet(self) -> None:
        idle = 0
        while idle < QUIET_TURNS:
            seen = self._activity
            await anyio.lowlevel.checkpoint()
            idle = idle + 1 if seen == self._activity else 0

    async def _park(self, asked: Asked) -> NoReturn:
        """The run would act here (or wait): the replay goes no further on this path."""
        self._activity += 1
        if self.parked is None:
            self.parked = asked
        self.parked_calls.append(asked)
        self.stopped.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def _diverge(
        self, kind: str, asked: Asked | None, *, position: int | None, message: str | None = None, **details: Any
    ) -> NoReturn:
        if self.divergence is None:
            history = None if position is None or position >= len(self._entries) else self.describe(position)
            text = message or f"at position {position + 1 if position is not None else '-'} the history holds {history}; the new code asked for {asked.text if asked else 'nothing'}"
            self.divergence = Divergence(
                self._record.run_id,
                self._record.workflow,
                kind,
                text,
                None if position is None else position + 1,
                history,
                None if asked is None else asked.text,
                details,
            )
        self.stopped.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def _stop_incomplete(self, reason: str) -> NoReturn:
        self.incomplete = self.incomplete or reason
        self.stopped.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    def describe(self, position: int) -> str:
        """The history's entry at ``position`` (from 0), in words."""
        key = self._entries[position]
        name, occurrence = split_key(key)
        nth = f" (its {occurrence}th)" if occurrence > 1 else ""
        if key.endswith(DEADLINE):
            return f"a wait for signal {name[len(SIGNAL):]!r} with a timeout{nth}"
        value = json.loads(self._steps[key])
        if name == "#sleep":
            return f"a sleep until {value['until']}{nth}"
        if name.startswith(SIGNAL):
            how = "timed out" if value.get("timeout") else "delivered"
            return f"a wait for signal {name[len(SIGNAL):]!r} ({how}){nth}"
        if name == CHILD:
            return f"a child run of {value['workflow']!r} ({value['runId']}){nth}"
        return f"step {name!r}{nth}"

    # -- the calls RunContext makes -----------------------------------------------------------------

    async def step(self, name: str, fn: Any, args: Any, kwargs: Any, *, retries: int, timeout: float | None, backoff: float) -> Any:
        check_step(name, fn, retries, timeout, backoff)
        key = self._key(name)
        asked = Asked("step", f"step {name!r}")
        text = self._steps.get(key)
        if text is None:
            await self._park(asked)
        await self._ask([key], asked)
        return json.loads(text)

    async def sleep(self, *, seconds: float | None = None, until: datetime | None = None) -> None:
        key = self._key("#sleep")
        asked = Asked("sleep", "a sleep")
        if key not in self._steps:
            await self._park(asked)
        await self._ask([key], asked)
        if not self._continues():
            await self._park(asked)  # the run sleeps here (or went on from here, storing nothing yet)

    async def wait_for_signal(self, name: str, *, timeout: float | None, model: Any) -> Any:
        check_signal_name(name)
        if model is None:
            model = self._workflow.signals.get(name)
        key = self._key(SIGNAL + name)
        asked = Asked("signal", f"a wait for signal {name!r}", name=name)
        stored = [candidate for candidate in (key + DEADLINE, key) if candidate in self._steps]
        if stored:
            await self._ask(stored, asked)
        text = self._steps.get(key)
        if text is None:
            await self._park(asked)
        outcome = json.loads(text)
        if outcome.get("timeout"):
            raise SignalTimeout(
                f"No signal {name!r} reached run {self._record.run_id} within {timeout} s.",
                details={"run_id": self._record.run_id, "name": name},
            )
        if model is None:
            return outcome["data"]
        try:
            return adapter(model).validate_python(outcome["data"])
        except ValidationError as exc:
            await self._diverge(
                "signal_invalid",
                asked,
                position=self._position[key],
                message=f"the signal {name!r} the run took does not validate against {getattr(model, '__name__', model)!r}:"
                f" {exc.error_count()} problem(s)",
                errors=validation_errors(exc),
            )

    async def start_child(self, workflow: Any, *, input: Any, key: str | None, at: Any, delay: Any) -> RunReceipt:
        call = self._key(CHILD)
        wanted = getattr(workflow, "name", workflow)
        asked = Asked("child", f"a child run of {wanted!r}")
        text = self._steps.get(call)
        if text is None:
            await self._park(asked)
        await self._ask([call], asked)
        stored = json.loads(text)
        position = self._position[call]
        try:
            definition = self._registry.resolve(workflow)
        except AdmissionError:
            await self._diverge("child_mismatch", asked, position=position, message=f"the new code starts a child run of"
                                f" {wanted!r}, which it does not register; the history holds {self.describe(position)}")  # fmt: skip
        if definition.name != stored["workflow"]:
            await self._diverge("child_mismatch", asked, position=position)
        child = self._history.children.get(stored["runId"])
        if child is not None:
            await self._same_child(child, definition, input, key or call, asked, position)
        return RunReceipt.trusted(
            run_id=stored["runId"], workflow=stored["workflow"], stream_url=run_url("", stored["runId"]), offset="-1"
        )

    async def _same_child(self, child: RunRecord, definition: Workflow, input: Any, key: str, asked: Asked, position: int) -> None:
        try:
            snapshot = definition.snapshot_input(input)
        except AdmissionError as exc:
            await self._diverge("child_mismatch", asked, position=position, message=f"the input the new code gives child"
                                f" run {child.run_id} is refused: {exc.message}")  # fmt: skip
        if snapshot != child.input:
            await self._diverge("child_mismatch", asked, position=position, message=f"child run {child.run_id} was started"
                                " with other input than the new code gives it", stored_input=child.input, new_input=snapshot)  # fmt: skip
        stored_key = (child.key or "").split("/", 1)[-1]
        if stored_key != key:
            await self._diverge("child_mismatch", asked, position=position, message=f"child run {child.run_id} was started"
                                f" with key {stored_key!r}; the new code gives {key!r}")  # fmt: skip

    async def wait_for(self, children: list[Any]) -> list[Any]:
        self._activity += 1
        ids = [child_run_id(child) for child in children]
        self.children_waits.append(frozenset(ids))
        ours = set(self._history.child_ids())
        records = []
        for run_id in ids:
            record = self._history.children.get(run_id)
            if record is None:
                if run_id not in ours:
                    raise StepError(
                        f"Run {run_id!r} is not a child of run {self._record.run_id}: wait only for runs started with ctx.start_child.",
                        details={"run_id": run_id},
                    )
                await self._stop_incomplete(f"child run {run_id} is not in the history (pruned?), so its result is unknown")
            records.append(record)
        unfinished = tuple(record.run_id for record in records if not record.finished)
        if unfinished:
            await self._park(Asked("children", f"a wait for child run(s) {', '.join(unfinished)}", run_ids=tuple(ids)))
        return [child_result(record) for record in records]

    def now(self) -> datetime:
        text = self._steps.get(self._key(NOW))
        return utc_now() if text is None else parse_timestamp(json.loads(text))

    def patched(self, change: str) -> bool:
        check_change_id(change)
        known = self._patches.get(change)
        if known is None:
            known = PATCH + change in self._steps or not history_continues(self._steps, self._seen)
            self._patches[change] = known
            (self.new_paths if known else self.old_paths).append(change)
        return known

    # -- the verdict --------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Return once the replay has gone as far as it can: the function ended, a divergence was
        found, or calls parked and the code stays still (calls in flight beside them are done)."""
        await self.stopped.wait()
        if self.parked is not None and self.divergence is None and self.incomplete is None and not self.done:
            if self._continues():
                await self._quiet()

    def verdict(self, returned: bool, raised: BaseException | None) -> None:
        """Judge the replay once it settled: the history must be asked for in full, and a run that
        waits must reach the wait it waits in."""
        if self.divergence is not None or self.incomplete is not None:
            return
        asked = self.parked
        if asked is None and raised is not None:
            asked = Asked("raised", f"nothing more: it raised {type(raised).__name__}: {raised}")
        elif asked is None and returned:
            asked = Asked("returned", "nothing more: the workflow returned")
        if asked is None:
            return
        kind = "raised" if asked.kind == "raised" else "call_mismatch"
        if self._continues():
            self.divergence = self._divergence(kind, asked, self._low, self.describe(self._low))
            return
        waits = _waiting_in(self._record)
        if waits is not None and not _reaches(self.parked_calls, self._record, self.children_waits):
            self.divergence = self._divergence(kind, asked, len(self._entries), f"{waits} (the run waits there)")

    def _divergence(self, kind: str, asked: Asked, position: int, history: str) -> Divergence:
        return Divergence(
            self._record.run_id,
            self._record.workflow,
            kind,
            f"at position {position + 1} the history holds {history}; the new code asked for {asked.text}",
            position + 1,
            history,
            asked.text,
        )


def adapter(model: Any) -> TypeAdapter[Any]:
    """A validator of ``model``, made once (a replay check validates the same models over and over)."""
    try:
        return _cached_adapter(model)
    except TypeError:  # an unhashable type annotation
        return TypeAdapter(model)


@lru_cache(maxsize=256)
def _cached_adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _waiting_in(record: RunRecord) -> str | None:
    """The durable wait a waiting run is parked in, in words (``None``: not one a replay can meet)."""
    waiting = record.waiting_for
    if record.status != RunStatus.WAITING or waiting is None:
        return None
    if waiting.kind == "sleep":
        return "a sleep"
    if waiting.kind == "signal":
        return f"a wait for signal {waiting.name!r}"
    if waiting.kind == "children":
        return f"a wait for child run(s) {', '.join(waiting.run_ids or ())}"
    return None  # a retry's back-off: the next attempt starts from the top


def _reaches(parked: list[Asked], record: RunRecord, children_waits: list[frozenset[str]]) -> bool:
    """Whether the new code reached the wait the run is parked in: one of the calls it stopped at,
    or for children (which may have ended since, letting the wait pass) any wait for them."""
    waiting = record.waiting_for
    assert waiting is not None
    if waiting.kind == "signal":
        return any(asked.kind == "signal" and asked.name == waiting.name for asked in parked)
    if waiting.kind == "children":
        return any(set(waiting.run_ids or ()) <= ids for ids in children_waits)
    return any(asked.kind == waiting.kind for asked in parked)

"""Step doubles: stand-ins for step functions, chosen by step name, and the record of every step call.

A double replaces what ``ctx.step(name, fn, ...)`` calls without touching the user's modules: the
runtime asks the environment for each step's function (``Runtime.step_doubles``), so the workflow's
code stays as it is deployed.
"""

from __future__ import annotations

import difflib
import inspect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flue_core.call_keys import MAX_NAME, split_key
from flue_core.snapshot import is_text
from flue_core.testkit.errors import InvalidStepDouble, UnusedStepDouble


class _Real:
    def __repr__(self) -> str:
        return "REAL"


#: An outcome of a double that calls the step's own function (``double("charge", TimeoutError, REAL)``).
REAL: Any = _Real()


@dataclass(slots=True)
class StepCall:
    """One call of a step's function (each try of a step with retries is one call).

    ``args`` and ``kwargs`` are what the workflow passed to ``ctx.step``; ``result`` what the call
    returned, or ``error`` what it raised (both ``None`` while it runs). ``doubled``: a double answered.
    """

    run_id: str
    name: str
    key: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    doubled: bool
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Double:
    target: str
    outcomes: tuple[Any, ...]
    used: int = 0
    calls: list[StepCall] = field(default_factory=list)

    def next_outcome(self) -> Any:
        outcome = self.outcomes[min(self.used, len(self.outcomes) - 1)]
        self.used += 1
        return outcome


class StepDoubles:
    """The doubles of one environment (``env.steps``) and every step call its runs made.

    ``double(name, *outcomes)`` answers the calls of step ``name`` in turn with ``outcomes``, the last
    one answering every call after it: a value is returned, an exception (class or instance) raised,
    a function called with the step's arguments (``async`` or not), and :data:`REAL` calls the step's
    own function. ``name`` matches every occurrence of the step (``fetch``, ``fetch#2``...);
    ``"fetch#2"`` only that one, before a double of the whole name.
    """

    def __init__(self) -> None:
        self._doubles: dict[str, _Double] = {}
        self._calls: list[StepCall] = []
        self._active: Counter[str] = Counter()

    def double(self, name: str, *outcomes: Any) -> None:
        """Answer calls of step ``name`` with ``outcomes`` (see the class); replaces an earlier double of ``name``."""
        _check_target(name)
        if not outcomes:
            raise InvalidStepDouble(
                f"double({name!r}) needs what the step answers: a value, an exception, a function or REAL.",
                details={"step": name},
            )
        self._doubles[name] = _Double(name, outcomes)

    def calls(self, name: str | None = None, *, run: Any = None) -> list[StepCall]:
        """The step calls made so far, in order: of every step, or of ``name`` (a name matches its
        every occurrence, ``"fetch#2"`` one), of every run or of ``run`` (a receipt, record or id)."""
        run_id = None if run is None else getattr(run, "run_id", run)
        found = self._calls
        if name is not None:
            found = [call for call in found if name in (call.name, call.key)]
        if run_id is not None:
            found = [call for call in found if call.run_id == run_id]
        return list(found)

    def count(self, name: str, *, run: Any = None) -> int:
        """How many times step ``name`` was called (see :meth:`calls`)."""
        return len(self.calls(name, run=run))

    def unused(self) -> list[str]:
        """Names of the doubles no step call has reached."""
        return [name for name, double in self._doubles.items() if double.used == 0]

    def check_used(self) -> None:
        """Raise :class:`UnusedStepDouble` if a double was never called (the environment does this as it closes)."""
        unused = self.unused()
        if not unused:
            return
        ran = sorted({call.name for call in self._calls})
        hints = []
        for name in unused:
            close = difflib.get_close_matches(split_key(name)[0], ran, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UnusedStepDouble(
            f"No step ran for the double(s) {', '.join(hints)}; steps that ran: {', '.join(map(repr, ran)) or 'none'}.",
            details={"unused": unused, "ran": ran},
        )

    def active(self, run_id: str) -> int:
        """How many step calls of ``run_id`` are executing right now."""
        return self._active[run_id]

    # -- the runtime's side (``Runtime.step_doubles``) ---------------------------------------------

    def stand_in(self, run_id: str, name: str, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        double = self._doubles.get(key) or self._doubles.get(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            outcome = REAL if double is None else double.next_outcome()
            record = StepCall(run_id, name, key, args, kwargs, doubled=outcome is not REAL)
            self._calls.append(record)
            if double is not None:
                double.calls.append(record)
            self._active[run_id] += 1
            try:
                result = await _answer(outcome, fn, args, kwargs)
            except BaseException as exc:
                record.error = exc
                raise
            finally:
                self._active[run_id] -= 1
            record.result = result
            return result

        return call


async def _answer(outcome: Any, fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    if outcome is REAL:
        outcome = fn
    elif isinstance(outcome, BaseException):
        raise outcome
    elif isinstance(outcome, type) and issubclass(outcome, BaseException):
        raise outcome()
    elif not callable(outcome):
        return outcome
    value = outcome(*args, **kwargs)
    return await value if inspect.isawaitable(value) else value


def _check_target(name: Any) -> None:
    base, occurrence = split_key(name) if isinstance(name, str) else ("", 0)
    valid = (
        isinstance(name, str)
        and 0 < len(base) <= MAX_NAME
        and "#" not in base
        and is_text(name)
        and (name == base or occurrence >= 2)
    )
    if not valid:
        raise InvalidStepDouble(
            f"A step double names a step: 1-{MAX_NAME} characters without '#' (or 'name#N' for its Nth"
            f" occurrence, N >= 2), not {name!r}.",
            details={"step": repr(name)},
        )

"""Defining workflows: the ``@workflow`` decorator and the :class:`Workflow` it returns."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from flue_core.arguments import WORKFLOW_NAME
from flue_core.cron import check_cron
from flue_core.errors import (
    InputNotSerializable,
    InvalidInput,
    InvalidSchedule,
    InvalidSignal,
    InvalidWorkflowDefinition,
    UnexpectedInput,
    validation_errors,
)
from flue_core.flow.limits import Limits
from flue_core.flow.policy import NO_POLICY, FlowPolicy, check_policy, limits_of
from flue_core.signals import check_signal_name
from flue_core.snapshot import NotJSON, json_form, snapshot

_NO_INPUT = object()

#: How many interruptions a run survives by default (see :attr:`Workflow.max_recoveries`).
DEFAULT_MAX_RECOVERIES = 20


@dataclass(frozen=True, eq=False)
class Workflow:
    """A registered unit of background work. Made by :func:`workflow`; compared by identity.

    ``retries`` is how many times a run may be executed again after an attempt failed (completed
    steps are replayed, not re-run). An interruption is not a failure: a run whose process died or
    was stopped, whose lease was lost or whose store was unreachable resumes the same attempt by
    replay, up to ``max_recoveries`` times (then it ends ``failed`` with ``recovery_limit``: a step
    that crashes its process every time must not loop forever); ``max_recoveries=0`` instead counts
    an interruption as a failed attempt, retried while ``retries`` allow, else ended
    ``run_interrupted``. ``timeout`` bounds one execution of an
    attempt, in seconds (time spent waiting durably does not count). ``http`` exposes the workflow at
    ``POST /workflows/<name>``; ``middleware`` guards that route. ``concurrency`` caps how many of its
    runs execute at once across every process sharing the store (per key value, with
    ``flow.concurrency_key``); ``flow`` holds the rest of its flow control (keys, rate limit, default
    priority, debounce: see :mod:`flue_core.flow`). ``signals`` maps the signal names
    the workflow accepts to the type their data must have (when given, other names are refused).
    ``schedule`` is a cron expression that starts a run with ``schedule_input`` at every tick.
    """

    name: str
    fn: Callable[..., Awaitable[Any]]
    input_type: Any = _NO_INPUT
    retries: int = 0
    timeout: float | None = None
    description: str | None = None
    http: bool = False
    middleware: Sequence[Any] = ()
    concurrency: int | None = None
    signals: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    schedule_input: Any = None
    schedule_timezone: str = "UTC"
    max_recoveries: int = DEFAULT_MAX_RECOVERIES
    flow: FlowPolicy = NO_POLICY
    _adapter: TypeAdapter[Any] | None = field(default=None, repr=False)
    _limits: Limits = field(default=Limits(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_limits", limits_of(self.concurrency, self.flow))

    @property
    def limits(self) -> Limits:
        """What the store applies when workers take this workflow's ready runs."""
        return self._limits

    @property
    def takes_input(self) -> bool:
        return self.input_type is not _NO_INPUT

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def snapshot_input(self, value: Any) -> Any:
        """Validate ``value`` and return the JSON snapshot admission stores. Raises before anything
        is stored: :class:`UnexpectedInput`, :class:`InputNotSerializable`, :class:`InvalidInput`."""
        if not self.takes_input:
            if value is not None:
                raise UnexpectedInput(
                    f"Workflow {self.name!r} takes no input; pass input=None.",
                    details={"workflow": self.name},
                )
            return None
        assert self._adapter is not None
        if value is None:
            value = {}
        adapter = self._adapter
        try:
            if not (isinstance(value, BaseModel) and _is_model_type(self.input_type) and isinstance(value, self.input_type)):
                value = snapshot(value, "input")  # plain values are refused before validation sees them
            try:
                parsed = adapter.validate_python(value)
            except ValidationError as exc:
                raise InvalidInput(
                    f"Input of workflow {self.name!r} is invalid: {exc.error_count()} problem(s).",
                    details={"workflow": self.name, "errors": validation_errors(exc)},
                ) from None
            # Validation may coerce "NaN" or "1e999" into floats JSON cannot carry, which pydantic's
            # JSON form would turn into null inside dict, list and Any fields: json_form refuses them.
            return snapshot(json_form(lambda mode: adapter.dump_python(parsed, mode=mode), "input"), "input")
        except NotJSON as exc:
            raise InputNotSerializable(
                f"Input of workflow {self.name!r} is not JSON: {exc}",
                details={"workflow": self.name, "path": exc.path, "reason": exc.reason},
            ) from None

    def parse_input(self, stored: Any) -> Any:
        """The value the workflow function receives, rebuilt from the stored snapshot."""
        if not self.takes_input:
            return None
        assert self._adapter is not None
        return self._adapter.validate_python(stored)


def _is_model_type(input_type: Any) -> bool:
    return isinstance(input_type, type) and issubclass(input_type, BaseModel)


def workflow(
    fn: Callable[..., Awaitable[Any]] | None = None,
    *,
    name: str | None = None,
    input: Any = _NO_INPUT,
    retries: int = 0,
    timeout: float | None = None,
    description: str | None = None,
    http: bool = False,
    middleware: Sequence[Any] = (),
    concurrency: int | None = None,
    signals: Mapping[str, Any] | None = None,
    schedule: str | None = None,
    schedule_input: Any = None,
    schedule_timezone: str = "UTC",
    max_recoveries: int = DEFAULT_MAX_RECOVERIES,
    concurrency_key: Any = None,
    rate_limit: Any = None,
    priority: int = 0,
    debounce: Any = None,
    debounce_key: Any = None,
) -> Any:
    """Turn ``async def fn(ctx)`` or ``async def fn(ctx, input: Model)`` into a :class:`Workflow`.

    The input type is read from the second parameter's annotation (or given as ``input=``); the
    name defaults to the function name with ``_`` turned into ``-``. See :class:`Workflow` for the
    other options.

    Flow control (``docs/flow-control.md``): ``concurrency_key`` (a field name of the input or a
    function of it) makes ``concurrency`` a limit per key value; ``rate_limit`` (a
    :class:`~flue_core.flow.policy.RateLimit`) caps run starts per period; ``priority`` (-100 to 100)
    is the default priority of the workflow's runs (higher starts first when runs wait for a slot);
    ``debounce`` (seconds) folds the starts that come within that window of each other, per value of
    ``debounce_key``, into one run that takes the last input and starts once the window passes.
    """

    def build(fn: Callable[..., Awaitable[Any]]) -> Workflow:
        if not inspect.iscoroutinefunction(fn):
            raise InvalidWorkflowDefinition(f"Workflow {fn!r} must be an `async def` function.")
        wf_name = name if name is not None else fn.__name__.replace("_", "-")
        if not WORKFLOW_NAME.fullmatch(wf_name):
            raise InvalidWorkflowDefinition(
                f"Workflow name {wf_name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit."
            )
        if retries < 0 or (timeout is not None and timeout <= 0):
            raise InvalidWorkflowDefinition(f"Workflow {wf_name!r}: retries must be >= 0 and timeout > 0.")
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
            raise InvalidWorkflowDefinition(f"Workflow {wf_name!r}: concurrency must be an integer >= 1 or None.")
        if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int) or max_recoveries < 0:
            raise InvalidWorkflowDefinition(f"Workflow {wf_name!r}: max_recoveries must be an integer >= 0.")
        flow = check_policy(wf_name, concurrency, concurrency_key, rate_limit, priority, debounce, debounce_key)
        declared_signals = _signals(wf_name, signals)
        if schedule is not None:
            _check_schedule(wf_name, schedule, schedule_timezone)
        elif schedule_input is not None or schedule_timezone != "UTC":
            raise InvalidWorkflowDefinition(
                f"Workflow {wf_name!r}: schedule_input and schedule_timezone need schedule= (a cron expression)."
            )
        input_type = input if input is not _NO_INPUT else _input_type(fn, wf_name)
        adapter = None if input_type is _NO_INPUT else TypeAdapter(input_type)
        return Workflow(
            name=wf_name,
            fn=fn,
            input_type=input_type,
            retries=retries,
            timeout=timeout,
            description=description if description is not None else inspect.getdoc(fn),
            http=http,
            middleware=tuple(middleware),
            concurrency=concurrency,
            signals=declared_signals,
            schedule=schedule,
            schedule_input=schedule_input,
            schedule_timezone=schedule_timezone,
            max_recoveries=max_recoveries,
            flow=flow,
            _adapter=adapter,
        )

    return build(fn) if fn is not None else build


def _input_type(fn: Callable[..., Any], name: str) -> Any:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) == 1:
        return _NO_INPUT
    if len(params) != 2:
        raise InvalidWorkflowDefinition(
            f"Workflow {name!r} must take (ctx) or (ctx, input); it takes {len(params)} parameters."
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # an annotation naming something not importable from the module
        raise InvalidWorkflowDefinition(
            f"Workflow {name!r}: cannot resolve the input annotation ({exc}); pass input=<type>."
        ) from None
    return hints.get(params[1].name, Any)



def _signals(name: str, signals: Mapping[str, Any] | None) -> dict[str, Any]:
    if signals is None:
        return {}
    if not isinstance(signals, Mapping):
        raise InvalidWorkflowDefinition(f"Workflow {name!r}: signals must map signal names to types.")
    for signal in signals:
        try:
            check_signal_name(signal)
        except InvalidSignal as exc:
            raise InvalidWorkflowDefinition(f"Workflow {name!r}: {exc.message}") from None
    return dict(signals)


def _check_schedule(name: str, cron: str, timezone: str) -> None:
    try:
        check_cron(cron, timezone)
    except InvalidSchedule as exc:
        raise InvalidWorkflowDefinition(f"Workflow {name!r}: {exc.message}") from None

"""A workflow's flow-control settings (:class:`FlowPolicy`, :class:`RateLimit`), checked when the
workflow is defined, and the keys they take from a run's input at admission (:func:`run_keys`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flue_core.errors import InvalidFlowKey, InvalidPriority, InvalidWorkflowDefinition
from flue_core.flow.limits import MAX_PRIORITY, MIN_PRIORITY, Limits
from flue_core.limits import MAX_KEY_LENGTH
from flue_core.snapshot import is_text

KeySource = str | Callable[[Any], str]
"""Where a flow-control key comes from: the name of a field of the run's input, or a function given
the validated input (the model instance, for a model-typed workflow) that returns a string."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` runs of the workflow start in any ``period`` (seconds, or a ``timedelta``),
    per value of ``key`` (a :data:`KeySource`; ``None``: for the whole workflow), across every
    process on the store. Only first starts count: a run resumed after a wait, a retry or an
    interruption is not held back. Runs over the limit stay queued and start as it allows."""

    limit: int
    period: float | timedelta = 1.0
    key: KeySource | None = None

    @property
    def seconds(self) -> float:
        return self.period.total_seconds() if isinstance(self.period, timedelta) else float(self.period)


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    """The flow-control settings of one workflow besides ``concurrency``: see :func:`flue_core.workflow`."""

    concurrency_key: KeySource | None = None
    rate_limit: RateLimit | None = None
    priority: int = 0
    debounce: float | None = None  # seconds
    debounce_key: KeySource | None = None

    @property
    def keyed(self) -> bool:
        """Whether admission computes a key from the input."""
        return self.concurrency_key is not None or self.debounce is not None or (
            self.rate_limit is not None and self.rate_limit.key is not None
        )


NO_POLICY = FlowPolicy()


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The key values of one run, as admission stores them."""

    concurrency_key: str | None = None
    rate_key: str | None = None
    debounce_key: str | None = None

    def event_data(self) -> dict[str, str]:
        """The keys set, as the ``run_queued`` event's data names them."""
        data = {"concurrencyKey": self.concurrency_key, "rateKey": self.rate_key, "debounceKey": self.debounce_key}
        return {name: value for name, value in data.items() if value is not None}


NO_KEYS = RunKeys()

#: The debounce key of a debounced workflow without ``debounce_key``: every start folds.
WHOLE_WORKFLOW = "*"


def check_policy(
    workflow: str,
    concurrency: int | None,
    concurrency_key: Any,
    rate_limit: Any,
    priority: Any,
    debounce: Any,
    debounce_key: Any,
) -> FlowPolicy:
    """The policy, or :class:`InvalidWorkflowDefinition` naming what is wrong."""

    def bad(message: str) -> InvalidWorkflowDefinition:
        return InvalidWorkflowDefinition(f"Workflow {workflow!r}: {message}")

    if concurrency_key is not None:
        _check_source(concurrency_key, "concurrency_key", bad)
        if concurrency is None:
            raise bad("concurrency_key needs concurrency= (the number of runs per key value).")
    if rate_limit is not None:
        if not isinstance(rate_limit, RateLimit):
            raise bad(f"rate_limit must be a RateLimit(limit, period, key=...), not {rate_limit!r}.")
        limit, seconds = rate_limit.limit, rate_limit.period
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise bad(f"rate_limit's limit must be an integer >= 1, not {limit!r}.")
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            raise bad(f"rate_limit's period must be a positive number of seconds or a timedelta, not {rate_limit.period!r}.")
        if rate_limit.key is not None:
            _check_source(rate_limit.key, "rate_limit's key", bad)
    check_priority(priority, lambda message: bad(message))
    window = debounce.total_seconds() if isinstance(debounce, timedelta) else debounce
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, (int, float)) or not math.isfinite(window) or window <= 0
    ):
        raise bad(f"debounce must be a positive number of seconds or a timedelta, not {debounce!r}.")
    if debounce_key is not None:
        _check_source(debounce_key, "debounce_key", bad)
        if window is None:
            raise bad("debounce_key needs debounce= (the window, in seconds).")
    return FlowPolicy(concurrency_key, rate_limit, priority, None if window is None else float(window), debounce_key)


def check_priority(priority: Any, error: Callable[[str], Exception] = InvalidPriority) -> int:
    """``priority`` if it is an integer from :data:`MIN_PRIORITY` to :data:`MAX_PRIORITY`."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise error(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, not {priority!r}.")
    return priority


def _check_source(source: Any, what: str, bad: Callable[[str], Exception]) -> None:
    if isinstance(source, str):
        if not source:
            raise bad(f"{what} must name a field of the input or be a function of it, not ''.")
    elif not callable(source):
        raise bad(f"{what} must name a field of the input or be a function of it, not {source!r}.")


def limits_of(concurrency: int | None, policy: FlowPolicy) -> Limits:
    """What the store applies when workers take the workflow's ready runs."""
    rate = policy.rate_limit
    if rate is None:
        return Limits(concurrency) if concurrency is not None else Limits()
    return Limits(concurrency, rate.limit, rate.seconds)


def run_keys(
    workflow: str, policy: FlowPolicy, snapshot: Any, parsed: Callable[[], Any], debounced: bool = True
) -> RunKeys:
    """The key values of a run whose input is ``snapshot`` (its validated JSON form); ``parsed()``
    gives the validated input a key function receives; no debounce key unless ``debounced`` (a
    child run or a re-run is not debounced). Raises :class:`InvalidFlowKey`."""
    value: list[Any] = []

    def key(source: KeySource | None, what: str) -> str | None:
        if source is None:
            return None
        if isinstance(source, str):
            if not isinstance(snapshot, Mapping) or source not in snapshot:
                raise InvalidFlowKey(
                    f"Workflow {workflow!r}: the input has no field {source!r} for its {what}.",
                    details={"workflow": workflow, "key": what, "field": source},
                )
            result = snapshot[source]
        else:
            if not value:
                value.append(parsed())
            try:
                result = source(value[0])
            except Exception as exc:
                raise InvalidFlowKey(
                    f"Workflow {workflow!r}: its {what} function raised {type(exc).__name__}: {exc}",
                    details={"workflow": workflow, "key": what, "error": type(exc).__name__},
                ) from exc
        if not (isinstance(result, str) and 0 < len(result) <= MAX_KEY_LENGTH and is_text(result)):
            raise InvalidFlowKey(
                f"Workflow {workflow!r}: its {what} must be a non-empty string of at most {MAX_KEY_LENGTH}"
                f" characters, not {_short(result)}.",
                details={"workflow": workflow, "key": what},
            )
        return result

    rate = policy.rate_limit
    debounce_key = None
    if policy.debounce is not None and debounced:
        debounce_key = key(policy.debounce_key, "debounce_key") if policy.debounce_key is not None else WHOLE_WORKFLOW
    return RunKeys(
        key(policy.concurrency_key, "concurrency_key"),
        None if rate is None else key(rate.key, "rate limit key"),
        debounce_key,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

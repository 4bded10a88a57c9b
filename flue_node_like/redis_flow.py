"""What the Redis run store sends its scripts for flow control: a run's priority and keys at admission
(with the frame of the event a debounced start writes when it folds), a workflow's limits at a take.
The rules are in :mod:`flue_core.store`; the scripts, ``lua/runs_flow.lua`` and ``lua/runs.lua``."""

from __future__ import annotations

from typing import Any

from flue_core.flow.limits import Limits
from flue_core.models import format_timestamp
from flue_core.snapshot import dumps
from flue_core.store import NewRun
from flue_node_like.redis_rows import event_head_around, event_mid, key_or_empty

__all__ = ["admit_flow_arguments", "take_limit_arguments"]

_NO_FLOW_CONTROL = ("",) * 8


def admit_flow_arguments(run: NewRun, debounced: bool) -> tuple[Any, ...]:
    """The flow-control arguments of ``admit``: priority, the three keys, and for a debounced start the
    frame of the ``run_debounced`` event it writes if it folds into a pending run."""
    if not run.priority and run.concurrency_key is None and run.rate_key is None and run.debounce_key is None:
        return _NO_FLOW_CONTROL
    keys = (run.priority or "", key_or_empty(run.concurrency_key), key_or_empty(run.rate_key))
    if run.debounce_key is None:
        return (*keys, "", "", "", "", "")
    if not debounced or run.start_at is None:
        return (*keys, key_or_empty(run.debounce_key), "", "", "", "")
    data = dumps({"input": run.input, "startAt": format_timestamp(run.start_at)})
    mid = event_mid("run_debounced", format_timestamp(run.created_at))
    return (*keys, key_or_empty(run.debounce_key), *event_head_around(), mid, data)


def take_limit_arguments(limits: Limits) -> tuple[Any, ...]:
    """A workflow's limits for ``take``: concurrency, rate, per (ms); ``""`` for none."""
    rate = "" if limits.rate is None or limits.per is None else limits.rate
    return (
        "" if limits.concurrency is None else limits.concurrency,
        rate,
        "" if rate == "" else round(limits.per * 1000),  # type: ignore[operator]
    )

"""The admission pipeline: the one way a run comes to exist, for ``start()`` and HTTP alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from flue_core import defaults
from flue_core.clock import SYSTEM_CLOCK, Clock
from flue_core.arguments import RUN_ID
from flue_core.definition import Workflow
from flue_core.errors import (
    ConfigurationError,
    IdempotencyKeyConflict,
    InvalidKey,
    InvalidSchedule,
    SchedulingFailed,
)
from flue_core.flow.policy import NO_KEYS, check_priority, run_keys
from flue_core.limits import MAX_KEY_LENGTH
from flue_core.models import RunError, RunReceipt, RunRecord, RunStatus, format_timestamp, utc_now
from flue_core.plugins import call_each, first_answer, has_implementations, notify, scope
from flue_core.shielding import shielded
from flue_core.snapshot import is_text
from flue_core.store import Admission, NewEvent, NewRun, Outcome

if TYPE_CHECKING:
    from flue_core.runtime import Runtime
    from flue_core.target import AdmissionClaim

#: The furthest a delayed start may lie ahead: about ten years.
MAX_DELAY = 10 * 366 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """What admission policies (``flue_check_admission``) see.

    ``input`` is the validated JSON snapshot. ``source`` is ``"python"`` for ``start()``, ``"http"``
    for ``POST /workflows/<name>``, ``"child"`` for ``ctx.start_child`` (``parent_run_id`` names the
    parent) and ``"schedule"`` for a schedule's tick; ``principal`` is whatever the HTTP layer
    authenticated (``None`` for trusted in-process callers). ``start_at`` is set for a delayed start.
    ``source`` is ``"rerun"`` for ``runs.rerun``, and ``rerun_of`` names the run it re-runs.
    ``priority`` is the run's (the start's, else the workflow's default).
    """

    workflow: Workflow
    input: Any
    key: str | None
    source: str
    principal: Any = None
    parent_run_id: str | None = None
    start_at: datetime | None = None
    rerun_of: str | None = None
    priority: int = 0


async def admit(
    runtime: Runtime,
    workflow: Workflow | str,
    input: Any = None,
    *,
    key: str | None = None,
    source: str = "python",
    principal: Any = None,
    parent_run_id: str | None = None,
    at: datetime | None = None,
    delay: float | None = None,
    rerun_of: str | None = None,
    steps: tuple[tuple[str, str], ...] = (),
    priority: int | None = None,
) -> RunReceipt:
    """Admit a run: resolve, validate and snapshot, apply policies, identify, persist, schedule.

    Returns at admission, never at completion. With ``at`` (an aware datetime) or ``delay``
    (seconds), the run is ``scheduled`` and executes from then on. A child run's ``key`` is scoped
    to its ``parent_run_id``. Raises a :class:`~flue_core.errors.AdmissionError` (or
    :class:`InvalidSchedule` for a bad ``at``/``delay``); nothing is stored unless the error is
    :class:`SchedulingFailed`, which leaves the run ended as ``failed`` with a closed stream.
    ``rerun_of`` and ``steps`` (step results taken over from that run) are ``runs.rerun``'s.
    ``priority`` (-100 to 100, :class:`InvalidPriority` else) defaults to the workflow's. A debounced
    workflow's run starts when its window has passed (``at``/``delay`` are refused), and a start
    within the window of a pending run folds into it (see :mod:`flue_core.flow`), except as
    :func:`debounces` says.
    """
    wf = runtime.registry.resolve(workflow)
    snapshot = wf.snapshot_input(input)
    priority = wf.flow.priority if priority is None else check_priority(priority)
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and is_text(key)):
        raise InvalidKey(
            f"An idempotency key must be a non-empty string of valid Unicode, at most {MAX_KEY_LENGTH} characters."
        )
    if wf.flow.debounce is not None and debounces(source, parent_run_id, rerun_of):
        if at is not None or delay is not None:
            raise InvalidSchedule(f"Workflow {wf.name!r} is debounced: its runs start when the window has passed, not at= or delay=.")
        delay = wf.flow.debounce
    start_at = start_time(at, delay, runtime.clock)
    hook = runtime.pm.hook
    request = AdmissionRequest(wf, snapshot, key, source, principal, parent_run_id, start_at, rerun_of, priority)
    with scope(hook.flue_admission_scope, request=request):
        return await _admit(runtime, request, steps)


async def _admit(runtime: Runtime, request: AdmissionRequest, steps: tuple[tuple[str, str], ...] = ()) -> RunReceipt:
    wf, snapshot, key = request.workflow, request.input, request.key
    parent_run_id, start_at = request.parent_run_id, request.start_at
    hook = runtime.pm.hook
    debounced = debounces(request.source, parent_run_id, request.rerun_of)
    keys = run_keys(wf.name, wf.flow, snapshot, lambda: wf.parse_input(snapshot), debounced) if wf.flow.keyed else NO_KEYS
    if has_implementations(hook.flue_check_admission):
        await call_each(hook.flue_check_admission, request=request)
    carrier = _carrier(runtime, request)
    run_id = _new_run_id(runtime, wf.name)
    now = _timestamp_of(run_id) or runtime.clock.now()
    stored_key = key if parent_run_id is None or key is None else f"{parent_run_id}/{key}"
    data: dict[str, Any] = {"workflow": wf.name, "input": snapshot, "key": stored_key}
    if parent_run_id is not None:
        data["parentRunId"] = parent_run_id
    if request.rerun_of is not None:
        data["rerunOf"] = request.rerun_of
        data["reusedSteps"] = [name for name, _ in steps]
    if start_at is not None and start_at > now:
        data["startAt"] = format_timestamp(start_at)
    else:
        start_at = None
    queued = NewEvent(0, "run_queued", data, now)
    target = runtime.target
    # A run that starts now, on a target that schedules it itself, may be claimed by its admission.
    claim = target.claim_at_admission(wf) if start_at is None and _target_schedules(runtime) else None
    if claim is not None:
        owner: str | None = claim.owner
    else:
        owner = None if start_at is not None else target.owner_for(wf)
    if request.priority:
        data["priority"] = request.priority
    if keys is not NO_KEYS:
        data.update(keys.event_data())
    new = NewRun(
        run_id, wf.name, snapshot, stored_key, now, owner, queued,
        parent_run_id=parent_run_id, start_at=start_at, carrier=carrier, rerun_of=request.rerun_of, steps=steps,
        priority=request.priority, concurrency_key=keys.concurrency_key, rate_key=keys.rate_key,
        debounce_key=keys.debounce_key,
    )  # fmt: skip
    # From here on the run may exist: finish admitting it (persist, then schedule or end it) even if
    # the caller is cancelled meanwhile, so no run is ever left queued with nobody to execute it.
    admission = await shielded(_persist(runtime, new, claim))
    record = admission.record
    if not admission.created:
        if keys.debounce_key is not None and (stored_key is None or record.key != stored_key):
            return runtime.receipt(record)  # folded into the pending run of its debounce key
        if record.input != snapshot and record.debounce_key is None:  # a debounced run's input is its last fold's
            raise IdempotencyKeyConflict(
                f"Key {key!r} already names run {record.run_id} of {wf.name!r}, admitted with other input.",
                details={"run_id": record.run_id, "workflow": wf.name, "key": key},
            )
        if has_implementations(hook.flue_admission_repeated):
            await notify(hook.flue_admission_repeated, run=record)
        return runtime.receipt(record)
    if has_implementations(hook.flue_run_admitted):
        await notify(hook.flue_run_admitted, run=record)
    return runtime.receipt(record)


def debounces(source: str, parent_run_id: str | None, rerun_of: str | None) -> bool:
    """Whether a start of a debounced workflow is debounced: not a child run (it belongs to its
    parent, which waits for it), a re-run (it carries the steps it takes over) or a schedule's tick
    (its key makes it exactly once, and a fold would not bind the key)."""
    return parent_run_id is None and rerun_of is None and source != "schedule"


def start_time(at: datetime | None, delay: float | None, clock: Clock = SYSTEM_CLOCK) -> datetime | None:
    """When a delayed start begins: ``at`` (timezone-aware) or ``delay`` seconds from ``clock``'s now, or ``None``."""
    if at is not None and delay is not None:
        raise InvalidSchedule("Give a delayed start either at= or delay=, not both.")
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise InvalidSchedule(f"at= must be a timezone-aware datetime, not {at!r}.", details={"at": repr(at)})
        if at - clock.now() > timedelta(seconds=MAX_DELAY):
            raise InvalidSchedule("at= lies more than ten years ahead.", details={"at": format_timestamp(at)})
        return at.astimezone(UTC)
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) or not 0 <= delay <= MAX_DELAY:
        raise InvalidSchedule(
            f"delay= must be a number of seconds from 0 to {int(MAX_DELAY)}, not {delay!r}.", details={"delay": repr(delay)}
        )
    return clock.now() + timedelta(seconds=delay)


def _carrier(runtime: Runtime, request: AdmissionRequest) -> dict[str, str] | None:
    hook = runtime.pm.hook.flue_capture_carrier
    if not has_implementations(hook):
        return None
    carrier: dict[str, str] = {}
    for answer in hook(request=request):
        if answer:
            carrier.update({str(name): str(value) for name, value in answer.items()})
    return carrier or None


def _target_schedules(runtime: Runtime) -> bool:
    """Whether the default ``flue_schedule_run`` (hand the run to the target) is the only one."""
    implementations = runtime.pm.hook.flue_schedule_run.get_hookimpls()
    return len(implementations) == 1 and implementations[0].function is defaults.flue_schedule_run


async def _persist(runtime: Runtime, new: NewRun, claim: AdmissionClaim | None) -> Admission:
    """Store the run, then start it in the target's slot (``claim``) or hand it over to be scheduled."""
    if claim is not None:
        return await _admit_claimed(runtime, new, claim)
    admission = await runtime.target.store.admit(new)
    if admission.created:
        await _schedule(runtime, admission.record)
    return admission


async def _admit_claimed(runtime: Runtime, new: NewRun, claim: AdmissionClaim) -> Admission:
    """Persist the run claimed for the target's slot in one store call, and start it there."""
    try:
        admission, attempt = await runtime.target.store.admit_claimed(new)
    except BaseException:
        claim.release()
        raise
    if attempt is None:  # an existing run's key, or (two-call stores) a run ended before its claim
        claim.release()
        return admission
    try:
        claim.start(attempt)
    except Exception as exc:
        await _unschedulable(runtime, admission.record, exc)
    return admission


async def _schedule(runtime: Runtime, record: RunRecord) -> None:
    """Hand a stored run to whoever executes it; if that fails, end the run (the failure rule)."""
    try:
        scheduled = await first_answer(runtime.pm.hook.flue_schedule_run, run=record, runtime=runtime)
        if not scheduled:
            raise ConfigurationError("No flue_schedule_run implementation accepted the run.")
    except Exception as exc:
        await _unschedulable(runtime, record, exc)


async def _unschedulable(runtime: Runtime, record: RunRecord, exc: Exception) -> NoReturn:
    """End a stored run nobody will execute as ``failed`` and raise :class:`SchedulingFailed`."""
    error = RunError(code="scheduling_failed", message=str(exc) or type(exc).__name__, type=_qualname(exc))
    await runtime.target.store.finish(record.run_id, Outcome(RunStatus.FAILED, utc_now(), error=error))
    raise SchedulingFailed(
        f"Run {record.run_id} was stored but could not be scheduled: {error.message}",
        details={"run_id": record.run_id, "workflow": record.workflow},
    ) from exc


def _new_run_id(runtime: Runtime, workflow: str) -> str:
    run_id = runtime.pm.hook.flue_generate_run_id(workflow=workflow)
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ConfigurationError(f"flue_generate_run_id returned {run_id!r}; ids are 1-128 of [A-Za-z0-9_-].")
    return run_id


def _timestamp_of(run_id: str) -> datetime | None:
    """The creation time carried by a default ``run_<ULID>`` id, so id order and time order agree."""
    if len(run_id) != 30 or not run_id.startswith("run_"):
        return None
    digits = run_id[4:14]
    if digits.strip(_CROCKFORD):  # a character outside Crockford's alphabet (upper case only)
        return None
    # The same digits as int() spells base 32, so it does the arithmetic.
    ms = int(digits.translate(_CROCKFORD_TO_INT), 32)
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # a custom id that only looks like a ULID
        return None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_TO_INT = str.maketrans(_CROCKFORD, "0123456789ABCDEFGHIJKLMNOPQRSTUV")


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__


def as_record_error(exc: BaseException, code: str, *, traceback: str | None = None) -> RunError:
    return RunError(code=code, message=str(exc) or type(exc).__name__, type=_qualname(exc), traceback=traceback)


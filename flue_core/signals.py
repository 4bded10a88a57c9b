"""Signals: data sent into a run from outside, kept in the run's mailbox until a wait takes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from ulid import ULID

from flue_core.arguments import EVENT_NAME
from flue_core.errors import (
    IdempotencyKeyConflict,
    InvalidKey,
    InvalidSignal,
    RunNotFound,
    validation_errors,
)
from flue_core.models import SignalReceipt
from flue_core.snapshot import NotJSON, json_form, snapshot
from flue_core.store import NewSignal

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

MAX_SIGNAL_KEY = 256
#: Problems a signal's error message lists; ``details["errors"]`` has all of them.
LISTED_PROBLEMS = 5


def check_signal_name(name: Any) -> None:
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise InvalidSignal(
            f"Invalid signal name {name!r}: use a letter then up to 63 of [A-Za-z0-9_.:-].",
            details={"name": name if isinstance(name, str) else repr(name)},
        )


async def send(runtime: Runtime, run_id: str, name: str, data: Any, key: str | None) -> SignalReceipt:
    """Validate a signal and put it in the run's mailbox (see ``runs.signal``)."""
    check_signal_name(name)
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_SIGNAL_KEY):
        raise InvalidKey(f"A signal's idempotency key must be a non-empty string of at most {MAX_SIGNAL_KEY} characters.")
    store = runtime.target.store
    record = await store.get(run_id)
    if record is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    # Whether the run has ended is the store's to say, after it looked for the key: a retried send
    # of a signal the run took before it ended gets the same answer as the first.
    workflow = runtime.registry.get(record.workflow)
    declared = workflow.signals if workflow is not None else {}
    if declared and name not in declared:
        raise InvalidSignal(
            f"Workflow {record.workflow!r} takes no signal {name!r}; it takes {', '.join(sorted(declared))}.",
            details={"run_id": run_id, "name": name, "accepted": sorted(declared)},
        )
    data = _data(declared.get(name), data, name)
    sent = await store.send_signal(run_id, NewSignal(f"sig_{ULID()}", name, data, key, runtime.clock.now()))
    if not sent.created and (sent.name != name or sent.data != data):
        raise IdempotencyKeyConflict(
            f"Key {key!r} already names signal {sent.signal_id} of run {run_id}, sent with other data.",
            details={"run_id": run_id, "signal_id": sent.signal_id, "key": key},
        )
    return SignalReceipt(signal_id=sent.signal_id, run_id=run_id, name=name, duplicate=not sent.created)


def _data(model: Any, data: Any, name: str) -> Any:
    """The JSON snapshot the mailbox stores: validated by ``model`` when the workflow declares one."""
    try:
        if model is None:
            return snapshot(data, "data")
        adapter = TypeAdapter(model)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        value = data if is_model and isinstance(data, model) else snapshot(data, "data")
        parsed = adapter.validate_python(value)
        return snapshot(json_form(lambda mode: adapter.dump_python(parsed, mode=mode), "data"), "data")
    except NotJSON as exc:
        raise InvalidSignal(f"Data of signal {name!r} is not JSON: {exc}", details={"name": name, "path": exc.path}) from None
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise InvalidSignal(f"Data of signal {name!r} is invalid: {problems(errors)}", details={"name": name, "errors": errors}) from None


def problems(errors: list[dict[str, Any]]) -> str:
    """``errors`` (of :func:`~flue_core.errors.validation_errors`) as one sentence that names each
    problem's field and says what is wrong, the first :data:`LISTED_PROBLEMS` of them: what a person
    reads in a toast, a log line or a failed run's error, where ``details`` are not shown."""
    listed = "; ".join(f"{'.'.join(error['loc']) or '(the data)'}: {error['message']}" for error in errors[:LISTED_PROBLEMS])
    more = f"; and {len(errors) - LISTED_PROBLEMS} more" if len(errors) > LISTED_PROBLEMS else ""
    return f"{len(errors)} problem(s): {listed}{more}."

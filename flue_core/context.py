"""What a workflow function receives: :class:`RunContext`."""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flue_core.errors import InvalidEvent, StepError
from flue_core.models import Event, utc_now
from flue_core.plugins import has_implementations
from flue_core.snapshot import NotJSON, dumps, event_snapshot, is_text, snapshot
from flue_core.store import NewEvent, event_json

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")

#: Event types Flue itself writes; ``ctx.emit`` refuses them (``progress`` has its own method).
RESERVED_TYPES = frozenset(
    {"run_queued", "run_start", "run_retry", "run_interrupted", "run_end", "log", "progress", "step"}
)
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_LEVELS = ("debug", "info", "warning", "error")


class RunLog:
    """``ctx.log.info("message", key=value)``: writes ``log`` events (and to the ``flue.run`` logger)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._logger = logging.getLogger("flue.run")

    def _write(self, level: str, message: str, attributes: dict[str, Any]) -> None:
        self._logger.log(
            logging.getLevelName(level.upper()), "%s %s", self._ctx.run_id, message, extra={"flue_run_id": self._ctx.run_id}
        )
        data: dict[str, Any] = {"level": level, "message": _json(str(message), "log message")}
        if attributes:
            data["attributes"] = _json(attributes, "log attributes")
        self._ctx._write("log", data)

    def debug(self, message: str, **attributes: Any) -> None:
        self._write("debug", message, attributes)

    def info(self, message: str, **attributes: Any) -> None:
        self._write("info", message, attributes)

    def warning(self, message: str, **attributes: Any) -> None:
        self._write("warning", message, attributes)

    def error(self, message: str, **attributes: Any) -> None:
        self._write("error", message, attributes)


class AttemptControl:
    """The executor's side of one attempt: its events and whether a cancel was asked.

    Events get consecutive indexes from ``next_index`` (where the stream stood when the attempt was
    claimed) and go to the store without waiting; after :meth:`close` (the attempt is over) they are
    dropped, so nothing lands after ``run_end``.
    """

    def __init__(self, runtime: Runtime, run_id: str, next_index: int) -> None:
        self.run_id = run_id
        self.cancel_requested = False
        self._runtime = runtime
        self._store = runtime.target.store
        self._next_index = next_index
        self._open = True

    def write(self, type: str, data: dict[str, Any]) -> None:
        if not self._open:
            log.warning("flue: run %s already ended; dropped its %r event", self.run_id, type)
            return
        event = NewEvent(self._next_index, type, data, utc_now())
        self._next_index += 1
        self._store.append(self.run_id, (event,))
        hook = self._runtime.pm.hook.flue_event_emitted
        if has_implementations(hook):
            self._runtime.notify_soon(hook, event=Event.model_validate_json(event_json(self.run_id, event)))

    def close(self) -> None:
        self._open = False


class RunContext:
    """The handle a workflow function gets for one attempt of one run.

    Events written through it (``log``, ``emit``, ``progress``, ``step``) are stored in order, without
    the workflow waiting for the disk; a run's events are all stored before its ``run_end``.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        run_id: str,
        workflow: str,
        input: Any,
        attempt: int,
        key: str | None,
        control: AttemptControl,
        steps: dict[str, str],
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.input = input
        self.attempt = attempt
        self.key = key
        self.log = RunLog(self)
        self._store = runtime.target.store
        self._control = control
        self._write = control.write
        self._replay = steps
        self._steps_seen: set[str] = set()

    @property
    def cancel_requested(self) -> bool:
        """Whether ``runs.cancel`` asked this run to stop (the run is also cancelled at its next await)."""
        return self._control.cancel_requested

    def emit(self, type: str, data: Any = None) -> None:
        """Write a custom event ``type`` with JSON ``data`` (a dict or a pydantic model)."""
        if not isinstance(type, str) or not _TYPE.match(type) or type in RESERVED_TYPES:
            raise InvalidEvent(
                f"Event type {type!r} is reserved or malformed: use a letter then up to 63 of"
                " [A-Za-z0-9_.:-], not one of " + ", ".join(sorted(RESERVED_TYPES)) + "."
            )
        payload = {} if data is None else _json(data, f"event {type!r}")
        if not isinstance(payload, dict):
            raise InvalidEvent(f"Data of event {type!r} must be an object, not {payload.__class__.__name__}.")
        self._write(type, payload)

    def progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress (``current`` of ``total``); shown as a bar by ``flue logs`` on a terminal."""
        data: dict[str, Any] = {"current": current}
        if total is not None:
            data["total"] = total
        if message is not None:
            data["message"] = str(message)
        self._write("progress", _json(data, "progress"))

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once per run: its JSON result is stored, and an attempt that
        re-executes the run gets the stored result back instead of calling ``fn`` again.

        The value returned is the stored JSON form in both cases (a model comes back as a dict).
        Names must be unique within an attempt.
        """
        if not isinstance(name, str) or not name or not is_text(name):
            raise StepError("A step needs a non-empty name of valid Unicode.")
        if name in self._steps_seen:
            raise StepError(f"Step {name!r} ran twice in one attempt; give each step its own name.")
        self._steps_seen.add(name)
        stored = self._replay.get(name)
        if stored is not None:
            self._write("step", {"name": name, "replayed": True})
            return json.loads(stored)
        began = time.perf_counter()
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        try:
            text = dumps(snapshot(value, f"step {name!r} result"))
        except NotJSON as exc:
            raise StepError(f"Step {name!r} returned a value JSON cannot carry: {exc}") from None
        await self._store.save_step(self.run_id, name, text)
        self._write("step", {"name": name, "replayed": False, "durationMs": int((time.perf_counter() - began) * 1000)})
        return json.loads(text)


def _json(value: Any, label: str) -> Any:
    try:
        return event_snapshot(value, label)
    except NotJSON as exc:
        raise InvalidEvent(f"{exc}", details={"path": exc.path, "reason": exc.reason}) from None

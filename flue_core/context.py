"""What a workflow function receives: :class:`RunContext`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flue_core import durable
from flue_core.arguments import EVENT_NAME
from flue_core.attempt import AttemptControl
from flue_core.errors import InvalidEvent
from flue_core.models import RunReceipt
from flue_core.snapshot import NotJSON, event_snapshot

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.runtime import Runtime

log = logging.getLogger("flue")
_RUN_LOGGER = logging.getLogger("flue.run")

#: Event types Flue itself writes; ``ctx.emit`` refuses them (``progress`` has its own method).
RESERVED_TYPES = frozenset(
    {
        "run_queued",
        "run_start",
        "run_resume",
        "run_retry",
        "run_interrupted",
        "run_waiting",
        "run_end",
        "log",
        "progress",
        "step",
        "step_retry",
        "signal_received",
        "signal_delivered",
        "signal_timeout",
        "child_started",
    }
)
_LEVELS = ("debug", "info", "warning", "error")


class RunLog:
    """``ctx.log.info("message", key=value)``: writes ``log`` events (and to the ``flue.run`` logger)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._logger = _RUN_LOGGER

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


class RunContext:
    """The handle a workflow function gets for one execution of one run.

    Events written through it (``log``, ``emit``, ``progress``, ``step``...) are stored in order,
    without the workflow waiting for the disk; a run's events are all stored before its ``run_end``.

    **Durable calls.** ``step``, ``sleep``, ``sleep_until``, ``wait_for_signal``, ``start_child`` and
    ``wait_for`` are recorded in the store. When a run is executed again — a retry, a recovery after
    its process died, or a resumption after a wait — the function runs from the top and each durable
    call returns what it returned before instead of acting again. Calls are matched by name and
    occurrence (the second ``step("fetch", ...)`` of a run is ``fetch#2``), so the order of durable
    calls must be the same on every execution: keep the workflow's decisions on durable values.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        workflow: Workflow,
        input: Any,
        control: AttemptControl,
        steps: dict[str, str],
        calls: durable.Calls | None = None,
    ) -> None:
        record = control.record
        self.run_id = record.run_id
        self.workflow = workflow.name
        self.input = input
        self.attempt = record.attempt
        self.key = record.key
        self.parent_run_id = record.parent_run_id
        self._runtime = runtime
        self._definition = workflow
        self._control = control
        self._write = control.write
        # ``calls``: another keeper of the durable calls (the replay check's, which runs nothing).
        self._calls = calls if calls is not None else durable.Calls(runtime, workflow, control, steps)

    _log: RunLog | None = None  # set only to stand in for the run's log (the replay check's silent one)

    @property
    def log(self) -> RunLog:
        """``ctx.log.info("message", key=value)``: ``log`` events of this run (see :class:`RunLog`)."""
        # Made on use: one kept here would tie every context into a reference cycle with it, which
        # only the garbage collector frees (and each run's context then makes it run).
        return self._log if self._log is not None else RunLog(self)

    @log.setter
    def log(self, log: RunLog) -> None:
        self._log = log

    @property
    def cancel_requested(self) -> bool:
        """Whether ``runs.cancel`` asked this run to stop (the run is also cancelled at its next await)."""
        return self._control.cancel_requested

    def emit(self, type: str, data: Any = None) -> None:
        """Write a custom event ``type`` with JSON ``data`` (a dict or a pydantic model)."""
        if not isinstance(type, str) or not EVENT_NAME.fullmatch(type) or type in RESERVED_TYPES:
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

    def now(self) -> datetime:
        """The current time (UTC, to the millisecond) as the run's clock tells it, the same on every
        execution: the first read at this point of the run is stored, and a replay gets it back.
        In :mod:`flue_core.testkit` it is the test's virtual time. Decide on this, not on
        ``datetime.now()``, which differs on replay."""
        return self._calls.now()

    def patched(self, change: str) -> bool:
        """Whether this run takes the new path of a change to the workflow's code (see "Changing a
        workflow safely" in ``docs/testing.md``)::

            if ctx.patched("send-sms"):
                await ctx.step("sms", send_sms, input.phone)     # the new code
            else:
                await ctx.step("email", send_email, input.email) # what runs started before did

        ``True`` where the run reaches this point in a fresh execution (a marker is stored, so its
        replays say ``True`` too), ``False`` where the run's history passed this point before the
        patch existed. ``change`` is 1-200 characters without ``#``. Once ``flue replay`` reports
        no unfinished run on the old path, delete the call and the old branch.
        """
        return self._calls.patched(change)

    # -- durable calls ------------------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        timeout: float | None = None,
        backoff: float = 1.0,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once per run: its JSON result is stored, and an execution
        that replays the run gets the stored result back instead of calling ``fn`` again.

        The value returned is the stored JSON form in both cases (a model comes back as a dict).
        A name used again in the same run (a loop) is numbered by occurrence: ``fetch``, ``fetch#2``...

        ``retries``: how many times a failing ``fn`` is called again, after ``backoff`` seconds
        doubling each time (capped at a minute), before its exception fails the attempt.
        ``timeout``: seconds one call of an async ``fn`` may take (:class:`~flue_core.errors.StepTimeout`).
        These three names are Flue's: pass arguments so named to ``fn`` through a lambda.
        """
        return await self._calls.step(name, fn, args, kwargs, retries=retries, timeout=timeout, backoff=backoff)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` durably: the run is suspended (status ``waiting``, no worker slot held)
        and resumes when the time comes, also after every process was restarted in between."""
        await self._calls.sleep(seconds=seconds)

    async def sleep_until(self, when: datetime) -> None:
        """Wait durably until ``when`` (a timezone-aware datetime); see :meth:`sleep`."""
        await self._calls.sleep(until=when)

    async def wait_for_signal(self, name: str, *, timeout: float | None = None, model: Any = None) -> Any:
        """Wait durably for a signal called ``name`` (sent with ``runs.signal``) and return its data.

        Signals are delivered in the order they were received, each to one wait; a signal sent
        before the run waits for it is kept until it does. ``model`` (or the model the workflow
        declares for ``name`` in ``@workflow(signals=...)``) validates the data and is what is
        returned. Raises :class:`~flue_core.errors.SignalTimeout` after ``timeout`` seconds.
        """
        return await self._calls.wait_for_signal(name, timeout=timeout, model=model)

    async def start_child(
        self,
        workflow: Workflow | str,
        *,
        input: Any = None,
        key: str | None = None,
        at: datetime | None = None,
        delay: float | None = None,
    ) -> RunReceipt:
        """Admit a child run through the same admission as ``workflows.start`` and return its receipt.

        The child's record names this run as ``parent_run_id``. ``key`` (default: the call's
        occurrence) is scoped to this run, so an execution that replays the run gets the same child
        back and never starts a second one.
        """
        return await self._calls.start_child(workflow, input=input, key=key, at=at, delay=delay)

    async def wait_for(self, child: RunReceipt | str) -> Any:
        """Wait durably until the child run ends and return its result; raises
        :class:`~flue_core.errors.RunFailed` or :class:`~flue_core.errors.RunCancelled` like
        ``runs.result``."""
        (result,) = await self._calls.wait_for([child])
        return result

    async def wait_for_all(self, children: Sequence[RunReceipt | str]) -> list[Any]:
        """Wait durably until every child run has ended; return their results in order.

        A child that fails early does not end the wait: it lasts until the last child has ended. Then
        the first child *in the order given* that did not complete raises, as in :meth:`wait_for`
        (:class:`~flue_core.errors.RunFailed` or :class:`~flue_core.errors.RunCancelled`), and the
        other children's outcomes are not returned."""
        return await self._calls.wait_for(list(children))


def _json(value: Any, label: str) -> Any:
    try:
        return event_snapshot(value, label)
    except NotJSON as exc:
        raise InvalidEvent(f"{exc}", details={"path": exc.path, "reason": exc.reason}) from None

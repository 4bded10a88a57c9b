"""The hook specifications: the contract between Flue and its plugins.

Every hook is prefixed ``flue_``. Four kinds, told apart by their shape:

* **registration** hooks are synchronous and called once when a runtime is built;
* **decision** hooks consult implementations in order (``tryfirst`` first, ``trylast`` last, otherwise
  newest registration first) and the first answer that is not ``None`` wins;
* **notification** hooks call every implementation; an exception is logged and never reaches the run;
* **scope** hooks (``flue_*_scope``) are synchronous and return a context manager (or ``None``) that
  Flue enters around a piece of work, in the task doing it: what ``__enter__`` sets in context
  variables (a current trace span, say) is seen by that work, and ``__exit__`` receives the exception
  that ends it, if any. Managers are entered in call order and exited in reverse; one that raises is
  logged and never reaches the work, and none can swallow an exception.

Decision and notification hooks may be ``async def``: Flue awaits each result itself (pluggy does not),
so never mark them ``firstresult`` or use hook wrappers around them (nor around scope hooks, which
Flue also calls itself).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import pluggy

PROJECT = "flue"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from flue_core.admission import AdmissionRequest
    from flue_core.models import Event, RunError, RunRecord
    from flue_core.replay.history import HistoryReader
    from flue_core.runtime import Runtime
    from flue_core.target import StoreRegistry, TargetRegistry


# -- registration -----------------------------------------------------------------------------------


@hookspec
def flue_register_targets(register: TargetRegistry) -> None:
    """Register execution targets. Called once per runtime, before a target is selected.

    Call ``register(name, factory, fallback=False)``: ``factory(**options)`` builds the
    :class:`~flue_core.target.Target`. A ``fallback`` target is chosen when no explicit choice,
    ``FLUE_TARGET`` or detection names one. Registering a name twice is an error.
    """


@hookspec
def flue_register_stores(register: StoreRegistry) -> None:
    """Register storage backends by URL scheme, for targets that take a store URL.

    Call ``register(scheme, factory)``: ``factory(url)`` returns a
    :class:`~flue_core.store.RunStore` for URLs like ``<scheme>://...``.
    """


# -- decisions --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def flue_history_reader(url: str) -> HistoryReader | None:
    """Return a :class:`~flue_core.replay.history.HistoryReader` of the runs stored at ``url``, or
    ``None`` for a URL this plugin does not read; the first answer wins.

    Synchronous; called by the replay check and the export of histories (``flue replay --store``,
    ``flue runs export``). The reader must never write to the store: not at opening (no schema
    created or upgraded, no worker registered, no retention sweep), nor while reading. Data in a
    layout it cannot read without upgrading it is an
    :class:`~flue_core.errors.UnsupportedHistory` (or :class:`~flue_core.errors.UnsupportedSchemaVersion`),
    raised when reading begins. Without an answer, histories of that store can only be checked from
    a file exported where it is reachable.
    """


@hookspec
def flue_detect_target() -> str | None:
    """Name the target this process runs on, or ``None`` if this plugin cannot tell.

    Every implementation is asked. One distinct answer selects that target; two distinct answers are
    an :class:`~flue_core.errors.AmbiguousTarget` error naming both.
    """


@hookspec(firstresult=True)
def flue_generate_run_id(workflow: str) -> str | None:
    """Return the id of a new run of ``workflow``; the first non-``None`` answer wins.

    Synchronous. The default (``trylast``) returns ``run_`` followed by a monotonic ULID. An id must be
    1-128 characters of letters, digits, ``_`` or ``-`` and unique; it is opaque to everyone else.
    """


@hookspec
def flue_check_admission(request: AdmissionRequest) -> None:
    """Accept or refuse a run before anything is stored.

    Called for every admission (``start()`` and HTTP alike) after the input is validated and before
    the run id exists. Every implementation is awaited in turn; to refuse, raise
    :class:`~flue_core.errors.AdmissionDenied` (or a subclass such as
    :class:`~flue_core.errors.RateLimited`): the caller gets that error, later policies are not
    asked, and no run exists. Returning normally accepts as far as this policy is concerned.
    """


@hookspec
def flue_capture_carrier(request: AdmissionRequest) -> dict[str, str] | None:
    """Return context to carry from the admitting caller to every process that executes the run.

    Synchronous; called once per admission, after ``flue_check_admission`` accepted it and before the
    run is stored. Every implementation is asked and their dicts (of strings) are merged, later
    plugins overriding earlier ones on a name; the result is persisted with the run as
    ``RunRecord.carrier`` (``None`` when empty) and is there for the hooks of any process that
    executes the run — an OpenTelemetry plugin injects the caller's trace context here (inside
    ``flue_admission_scope``) and continues it in ``flue_execution_scope``. Raising fails the
    admission with that error before anything is stored.
    """


@hookspec
def flue_schedule_run(run: RunRecord, runtime: Runtime) -> bool | None:
    """Decide who executes a freshly persisted run; the first non-``None`` answer wins.

    Return ``True`` once the run is handed to an executor. The default (``trylast``) hands it to the
    runtime's target. Raising means the run cannot be scheduled: admission then ends the run as
    ``failed`` (``scheduling_failed``) with a closed stream and raises
    :class:`~flue_core.errors.SchedulingFailed`.
    """


# -- notifications ----------------------------------------------------------------------------------


@hookspec
def flue_run_admitted(run: RunRecord) -> None:
    """A run was persisted and scheduled (not called for an idempotent repeat)."""


@hookspec
def flue_admission_repeated(run: RunRecord) -> None:
    """An admission was an idempotent repeat: its key named ``run``, admitted before with the same
    input, and nothing was stored (the caller gets ``run``'s receipt). Called inside
    ``flue_admission_scope``, in its place of ``flue_run_admitted``."""


@hookspec
def flue_run_started(run: RunRecord) -> None:
    """An execution of the run started in this process: a new attempt (``run.attempt`` counts from
    1), or the same attempt resumed after a wait."""


@hookspec
def flue_run_waiting(run: RunRecord, error: RunError | None) -> None:
    """An execution of the run in this process ended by suspending it: ``run`` is ``waiting``
    (``run.waiting_for`` and ``run.wake_at`` say for what); its next execution reports
    ``flue_run_started`` again, with the same ``run.attempt`` when it resumes the same attempt.
    ``error`` is why the attempt failed when the run waits for a retry (``waiting_for.kind ==
    "retry"``), otherwise ``None``."""


@hookspec
def flue_run_finished(run: RunRecord) -> None:
    """A run ended (first terminal write) through this process; ``run`` is the final record."""


@hookspec
def flue_event_emitted(event: Event) -> None:
    """A workflow in this process emitted ``event`` (indexed; stored shortly after, in order).

    Called for every event except ``run_queued`` and ``run_end`` (see ``flue_run_admitted`` and
    ``flue_run_finished``), in the background: the workflow never waits for it, and implementations
    may see events slightly after they were emitted.
    """


@hookspec
def flue_runtime_opened(runtime: Runtime) -> None:
    """The runtime opened: its target is open and runs may be started. Plugins that serve the runtime
    for its life (reading its store from another thread through ``runtime.call_sync``, say) keep it
    from here until ``flue_runtime_closing``."""


@hookspec
def flue_runtime_closing(runtime: Runtime) -> None:
    """The runtime is closing: called before its target closes, while the store is still open."""


# -- scopes -----------------------------------------------------------------------------------------


@hookspec
def flue_admission_scope(request: AdmissionRequest) -> AbstractContextManager[object] | None:
    """Return a context manager to enter around one admission, or ``None``.

    Entered once the input is validated, before ``flue_check_admission``; ``flue_capture_carrier``,
    the store write, ``flue_schedule_run`` and ``flue_run_admitted`` happen inside it. It exits with
    the admission's error (a refusal, an idempotency conflict, :class:`~flue_core.errors.SchedulingFailed`)
    or without one: then either ``flue_run_admitted`` was called inside it, or the admission was an
    idempotent repeat of an existing run (``flue_admission_repeated`` was). Runs in the admitting task (``start()``'s caller, the HTTP
    request, the parent run for ``ctx.start_child``, the scheduler for a schedule's tick).
    """


@hookspec
def flue_execution_scope(run: RunRecord, resumed: bool) -> AbstractContextManager[object] | None:
    """Return a context manager to enter around one execution of a run in this process, or ``None``.

    Entered in the task that executes the run once it has claimed it (``run`` is ``running``; ``resumed``
    is ``True`` when this execution continues an attempt that waited), and exited after the execution
    ended: the workflow function runs inside it, and so do ``flue_run_started`` and the
    ``flue_run_waiting`` or ``flue_run_finished`` that says how it ended. It exits without an error
    also when the run fails (the error is on the record), and with the cancellation when the process
    stops mid-run. ``run.carrier`` holds what ``flue_capture_carrier`` captured at admission, in
    whichever process that was.
    """


@hookspec
def flue_step_scope(run: RunRecord, step: str, try_number: int) -> AbstractContextManager[object] | None:
    """Return a context manager to enter around one call of a step's function, or ``None``.

    ``step`` is the step's key (its name, ``#2``... appended from its second occurrence in the run);
    ``try_number`` counts calls of the step from 1, so a step with retries gets one scope per try.
    Entered in the task that calls the function, inside the run's execution scope; it exits with the
    exception the call raised (its timeout included) or without one. Steps replayed from the store
    are not called and get no scope.
    """


# -- HTTP surface -----------------------------------------------------------------------------------
# Decisions the HTTP app (:func:`flue_core.http.create_app`) asks for. Both may be ``async def``; the
# app's own callable (``authorize_run_read=`` / ``authorize_run_list=``) is asked before any plugin.

if TYPE_CHECKING:
    from starlette.requests import Request


@hookspec
def flue_authorize_run_read(request: Request, run: RunRecord) -> bool | None:
    """May this HTTP request read ``run``: its record (``GET /runs/<id>?meta``), its event stream
    (``GET``/``HEAD /runs/<id>``) and, with the dashboard, its page there?

    Called once per request, after the run was found and before anything about it is sent; ``request``
    is the Starlette request (headers, ``request.state`` set by middleware, query). The first answer
    that is not ``None`` wins: ``True`` grants, ``False`` refuses. When every implementation returns
    ``None`` the read is refused: run reads are closed unless granted, since a run id is not a
    credential. A refused read gets the same 404 ``run_not_found`` as an unknown run. Return a
    ``bool``; any other answer is a configuration error (500). Raising a
    :class:`~flue_core.errors.FlueError` answers with its envelope, which tells the caller the run
    exists: prefer ``False``, and authenticate callers in app-level middleware before any lookup.
    """


@hookspec
def flue_authorize_run_cancel(request: Request, run: RunRecord) -> bool | None:
    """May this HTTP request cancel ``run`` (``POST /runs/<id>/cancel``)?

    Asked only after the request was granted reading the run (``flue_authorize_run_read``): a caller
    that may not read a run gets the same 404 ``run_not_found`` as for an unknown run, and is never
    asked about here. Reading does not imply cancelling: the first answer that is not ``None`` wins,
    ``True`` grants, ``False`` refuses, and no answer refuses, with 403 ``run_cancel_denied``. Return
    a ``bool``; any other answer is a configuration error (500).
    """


@hookspec
def flue_authorize_run_rerun(request: Request, run: RunRecord) -> bool | None:
    """May this HTTP request re-run ``run`` (``POST /runs/<id>/rerun``, and the dashboard's re-run
    button): start a new run of its workflow with its input, taking over its stored steps?

    Asked only of a caller already granted reading the run (``flue_authorize_run_read``), before the
    body is read and whether or not the run has ended; the app's own ``authorize_run_rerun=``
    callable is asked first. The first answer that is not ``None`` wins: ``True`` grants, ``False``
    refuses; no answer refuses, with 403 ``run_rerun_denied``. Return a ``bool``; any other answer
    is a configuration error (500). A granted re-run is still admitted like any start: admission
    policies (``flue_check_admission``) see ``source="rerun"`` and may refuse it.
    """


@hookspec
def flue_authorize_run_signal(request: Request, run: RunRecord) -> bool | None:
    """May this HTTP request send a signal into ``run`` (``POST /runs/<id>/signals/<name>``)?

    Asked only of a caller already granted reading the run (``flue_authorize_run_read``), before the
    body is read; the app's own ``authorize_run_signal=`` callable is asked first. The first answer
    that is not ``None`` wins: ``True`` grants, ``False`` refuses; no answer refuses, with 403
    ``run_signal_denied``. Return a ``bool``; any other answer is a configuration error (500).
    """


@hookspec
def flue_authorize_schedules(request: Request) -> bool | None:
    """May this HTTP request read and manage schedules (``/schedules`` routes, only when the app
    enables them with ``schedules_enabled=True``)?

    Called before anything else of the request is read; the app's own ``authorize_schedules=``
    callable is asked first. The first answer that is not ``None`` wins: ``True`` grants, ``False``
    refuses; no answer refuses. A refused request gets the same 404 ``route_not_found`` as an app
    where schedules are off. Return a ``bool``; any other answer is a configuration error (500).
    """


@hookspec
def flue_authorize_run_list(request: Request) -> bool | None:
    """May this HTTP request list runs (``GET /runs``, only when the app enables listing, and the
    dashboard's runs page)?

    Called before the query is read; the filters are in ``request.query_params``. The first answer
    that is not ``None`` wins: ``True`` grants, ``False`` refuses; no answer refuses. A refused
    listing gets the same 404 ``route_not_found`` as an app where listing is off. Return a ``bool``;
    any other answer is a configuration error (500).
    """

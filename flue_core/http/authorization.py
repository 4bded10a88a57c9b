"""Who may read, list, cancel, signal and re-run runs, and manage schedules, over HTTP: the app's
callable first, then plugin hooks, else no.

Every decision is closed by default. A run id is not a credential, so an application opts in by
passing ``authorize_run_read=`` / ``authorize_run_list=`` / ``authorize_run_cancel=`` /
``authorize_run_signal=`` / ``authorize_run_rerun=`` / ``authorize_schedules=`` to
:func:`~flue_core.http.create_app` or by implementing the ``flue_authorize_*`` hook of the same name
in a plugin. Cancelling, signalling and re-running are asked only of callers already granted reading
the run: a reader is not necessarily allowed to act.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy
from starlette.requests import Request

from flue_core import runs
from flue_core.errors import ConfigurationError, RunNotFound
from flue_core.models import RunRecord
from flue_core.plugins import first_answer

if TYPE_CHECKING:
    from flue_core.http.config import HttpConfig

#: ``(request, run) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
RunReadAuthorizer = Callable[[Request, RunRecord], "bool | None | Awaitable[bool | None]"]
#: ``(request, run) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
RunCancelAuthorizer = Callable[[Request, RunRecord], "bool | None | Awaitable[bool | None]"]
#: ``(request, run) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
RunSignalAuthorizer = Callable[[Request, RunRecord], "bool | None | Awaitable[bool | None]"]
#: ``(request, run) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
RunRerunAuthorizer = Callable[[Request, RunRecord], "bool | None | Awaitable[bool | None]"]
#: ``(request) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
SchedulesAuthorizer = Callable[[Request], "bool | None | Awaitable[bool | None]"]
#: ``(request) -> True | False | None`` (or an awaitable of it); ``None`` lets the hooks decide.
RunListAuthorizer = Callable[[Request], "bool | None | Awaitable[bool | None]"]


async def may_read_run(
    own: RunReadAuthorizer | None, hook: pluggy.HookCaller, request: Request, run: RunRecord
) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_run_read`` grants."""
    return await _decide("flue_authorize_run_read", own, hook, request=request, run=run)


async def may_cancel_run(
    own: RunCancelAuthorizer | None, hook: pluggy.HookCaller, request: Request, run: RunRecord
) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_run_cancel`` grants."""
    return await _decide("flue_authorize_run_cancel", own, hook, request=request, run=run)


async def may_signal_run(
    own: RunSignalAuthorizer | None, hook: pluggy.HookCaller, request: Request, run: RunRecord
) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_run_signal`` grants."""
    return await _decide("flue_authorize_run_signal", own, hook, request=request, run=run)


async def may_rerun_run(
    own: RunRerunAuthorizer | None, hook: pluggy.HookCaller, request: Request, run: RunRecord
) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_run_rerun`` grants."""
    return await _decide("flue_authorize_run_rerun", own, hook, request=request, run=run)


async def may_manage_schedules(own: SchedulesAuthorizer | None, hook: pluggy.HookCaller, request: Request) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_schedules`` grants."""
    return await _decide("flue_authorize_schedules", own, hook, request=request)


async def may_list_runs(own: RunListAuthorizer | None, hook: pluggy.HookCaller, request: Request) -> bool:
    """``True`` only when the app's callable or, if it abstains, a ``flue_authorize_run_list`` grants."""
    return await _decide("flue_authorize_run_list", own, hook, request=request)


async def readable_run(config: HttpConfig, request: Request) -> RunRecord:
    """The run of the path's ``run_id``, if the caller may read it; otherwise the one 404 an unknown
    run gets too, so a run id cannot be probed for existence."""
    run_id = request.path_params["run_id"]
    runtime = config.open_runtime()
    record = await runs.get(run_id, runtime=runtime)
    if record is None or not await may_read_run(
        config.authorize_run_read, runtime.pm.hook.flue_authorize_run_read, request, record
    ):
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": run_id})
    return record


async def _decide(
    name: str, own: Callable[..., Any] | None, hook: pluggy.HookCaller | None, **kwargs: Any
) -> bool:
    answer = None
    if own is not None:
        answer = own(*kwargs.values())
        if inspect.isawaitable(answer):
            answer = await answer
    if answer is None and hook is not None:
        answer = await first_answer(hook, **kwargs)
    if answer is None:
        return False
    if not isinstance(answer, bool):
        raise ConfigurationError(f"{name} answered {answer!r}; authorization answers True, False or None.")
    return answer

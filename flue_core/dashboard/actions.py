"""What a run's page lets a granted caller do: ``POST <prefix>/runs/{run_id}/{action}``.

Each :class:`Action` names who may take it (asked only of a caller who may read the run) and what it
does. The run's page offers the actions granted to its viewer; the endpoint checks, in this order,
that the action and the run exist and the run may be read (else the same 404 as an unknown route),
the method (``POST``), that the request comes from the dashboard's own page (:mod:`.csrf`), and the
action's grant (403 ``action_denied``). Its answer is the run's record after the action, as JSON.

The actions: ``cancel``, granted like ``POST /runs/{id}/cancel``; ``signal`` (a JSON body
``{"name", "data"}``), granted like ``POST /runs/{id}/signals/{name}``; and ``rerun`` (no body, or
``{"fromStep"}``), granted like ``POST /runs/{id}/rerun``, whose answer is the new run's record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import runs
from flue_core.dashboard.csrf import check_same_site
from flue_core.errors import InvalidSignal, RunNotFound
from flue_core.http.authorization import may_cancel_run, may_read_run, may_rerun_run, may_signal_run
from flue_core.http.body import read_json
from flue_core.http.config import HttpConfig
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.error_handling import route_not_found
from flue_core.http.errors import ActionDenied, MethodNotAllowed
from flue_core.http.rerun_route import rerun_options
from flue_core.http.workflow_route import request_principal
from flue_core.models import RunRecord
from flue_core.rerun import rerun


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    #: Whether this caller may take the action on this run (they may already read it).
    may: Callable[[HttpConfig, Request, RunRecord], Awaitable[bool]]
    #: Take it; returns the run's record afterwards (a re-run: the new run's).
    perform: Callable[[HttpConfig, Request, RunRecord], Awaitable[RunRecord]]


async def _may_cancel(config: HttpConfig, request: Request, run: RunRecord) -> bool:
    return await may_cancel_run(config.authorize_run_cancel, config.runtime.pm.hook.flue_authorize_run_cancel, request, run)


async def _cancel(config: HttpConfig, request: Request, run: RunRecord) -> RunRecord:
    # Not waiting for the end: the page follows the run's stream and shows the end when it comes.
    return await runs.cancel(run.run_id, wait_for=0, runtime=config.runtime)


async def _may_signal(config: HttpConfig, request: Request, run: RunRecord) -> bool:
    return await may_signal_run(config.authorize_run_signal, config.runtime.pm.hook.flue_authorize_run_signal, request, run)


async def _signal(config: HttpConfig, request: Request, run: RunRecord) -> RunRecord:
    body = await read_json(request, config.max_body_size)
    if not isinstance(body, dict) or set(body) - {"name", "data"} or not isinstance(body.get("name"), str):
        raise InvalidSignal('Send the signal as {"name": "<signal name>", "data": <JSON>}.')
    await runs.signal(run.run_id, body["name"], body.get("data"), runtime=config.runtime)
    after = await runs.get(run.run_id, runtime=config.runtime)
    return after if after is not None else run


async def _may_rerun(config: HttpConfig, request: Request, run: RunRecord) -> bool:
    return await may_rerun_run(config.authorize_run_rerun, config.runtime.pm.hook.flue_authorize_run_rerun, request, run)


async def _rerun(config: HttpConfig, request: Request, run: RunRecord) -> RunRecord:
    from_step = rerun_options(await read_json(request, config.max_body_size, "the re-run's options"))
    receipt = await rerun(config.runtime, run.run_id, from_step=from_step, principal=request_principal(request))
    new = await runs.get(receipt.run_id, runtime=config.runtime)
    if new is None:  # stored before its receipt was made: only a prune in between removes it
        raise RunNotFound(f"Run {receipt.run_id} was not found.", details={"run_id": receipt.run_id})
    return new


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("cancel", _may_cancel, _cancel),
        Action("signal", _may_signal, _signal),
        Action("rerun", _may_rerun, _rerun),
    )
}


async def granted_actions(config: HttpConfig, request: Request, run: RunRecord) -> list[str]:
    """The names of the actions this caller may take on ``run``, which its page offers."""
    return [name for name, action in ACTIONS.items() if await action.may(config, request, run)]


async def take_action(config: HttpConfig, request: Request) -> Response:
    runtime = config.open_runtime()
    action = ACTIONS.get(request.path_params["action"])
    record = await runs.get(request.path_params["run_id"], runtime=runtime)
    if (
        action is None
        or record is None
        or not await may_read_run(config.authorize_run_read, runtime.pm.hook.flue_authorize_run_read, request, record)
    ):
        return route_not_found(request)
    if request.method != "POST":  # nothing changes on a GET, whoever sends it
        raise MethodNotAllowed(request.method, ["POST"])
    check_same_site(request)
    if not await action.may(config, request, record):
        raise ActionDenied(
            f"This app does not let you {action.name} run {record.run_id}.",
            details={"run_id": record.run_id, "action": action.name},
        )
    after = await action.perform(config, request, record)
    return JSONResponse(after.model_dump(mode="json"), headers=PRIVATE_HEADERS)

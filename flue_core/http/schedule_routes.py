"""``/schedules``: read and manage cron schedules over HTTP (see :mod:`flue_core.schedules`).

Off unless ``create_app(..., schedules_enabled=True)``, and closed unless ``authorize_schedules=`` or
a ``flue_authorize_schedules`` hook grants the request: a refused caller gets the same 404
``route_not_found`` as an app without schedules, before anything else of the request is looked at.

| route | answers |
|---|---|
| ``GET /schedules`` | ``{"schedules": [...]}``, each with ``nextTicks`` (and ``lastRuns`` given ``?runs=``) |
| ``POST /schedules`` | 201 with the schedule created, 200 when it existed with that definition |
| ``GET /schedules/{name}`` | the schedule with ``nextTicks`` and ``lastRuns``, or 404 ``schedule_not_found`` |
| ``DELETE /schedules/{name}`` | 204 |
| ``POST /schedules/{name}/pause``, ``.../resume`` | the schedule |

A schedule can name only a workflow exposed over HTTP (``http=True``): any other is 404
``workflow_not_found``, as for a start. ``?ticks=`` and ``?runs=`` say how many of each to show (0
to 100; 5 unless asked, see :func:`flue_core.schedules.overview`). ``lastRuns`` gives each run's id,
status, tick and times, not its input or result: those only a caller who may read the run gets
(``GET /runs/{run_id}?meta``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import schedules
from flue_core.arguments import integer
from flue_core.errors import InvalidSchedule, WorkflowNotFound, validation_errors
from flue_core.http.authorization import may_manage_schedules
from flue_core.http.body import read_json
from flue_core.http.config import HttpConfig
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.error_handling import route_not_found
from flue_core.http.errors import MethodNotAllowed
from flue_core.http.query import parse_query

#: ``?ticks=`` how many next ticks, ``?runs=`` how many last runs each schedule shows (0 to 100).
SHOW_PARAMETERS = ("ticks", "runs")
DEFAULT_SHOWN = 5


class ScheduleRequest(BaseModel):
    """The body of ``POST /schedules``."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    workflow: StrictStr
    cron: StrictStr
    input: Any = None
    timezone: StrictStr = "UTC"
    catchup: StrictInt = 1
    paused: StrictBool = False


async def schedules_collection(config: HttpConfig, request: Request) -> Response:
    runtime = config.open_runtime()
    if not await may_manage_schedules(config.authorize_schedules, runtime.pm.hook.flue_authorize_schedules, request):
        return route_not_found(request)
    if request.method == "GET":
        ticks, runs = _shown(request, runs=None)
        listed = await schedules.list(runtime=runtime)
        shown = [await schedules.overview(each, ticks=ticks, runs=runs, runtime=runtime) for each in listed]
        return _json({"schedules": [overview.model_dump(mode="json") for overview in shown]})
    if request.method != "POST":
        raise MethodNotAllowed(request.method, ["GET", "POST"])
    parse_query(request, ())
    body = await read_json(request, config.max_body_size, "the schedule")
    try:
        wanted = ScheduleRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidSchedule(
            f"The body is not a schedule: {exc.error_count()} problem(s).", details={"errors": validation_errors(exc)}
        ) from None
    workflow = runtime.registry.get(wanted.workflow)
    if workflow is None or not workflow.http:
        raise WorkflowNotFound(f"No workflow named {wanted.workflow!r} is exposed over HTTP.", details={"workflow": wanted.workflow})
    existed = await runtime.target.store.get_schedule(wanted.name)
    made = await schedules.create(
        wanted.name,
        workflow,
        wanted.cron,
        input=wanted.input,
        timezone=wanted.timezone,
        catchup=wanted.catchup,
        paused=wanted.paused,
        runtime=runtime,
    )
    return _json(made.model_dump(mode="json"), status_code=200 if existed is not None else 201)


async def schedule_item(config: HttpConfig, request: Request) -> Response:
    runtime = config.open_runtime()
    if not await may_manage_schedules(config.authorize_schedules, runtime.pm.hook.flue_authorize_schedules, request):
        return route_not_found(request)
    name = request.path_params["name"]
    if request.method == "GET":
        ticks, runs = _shown(request, runs=DEFAULT_SHOWN)
        shown = await schedules.overview(name, ticks=ticks, runs=runs, runtime=runtime)
        return _json(shown.model_dump(mode="json"))
    parse_query(request, ())
    if request.method == "DELETE":
        await schedules.delete(name, runtime=runtime)
        return Response(status_code=204, headers=PRIVATE_HEADERS)
    raise MethodNotAllowed(request.method, ["GET", "DELETE"])


async def schedule_action(config: HttpConfig, request: Request) -> Response:
    runtime = config.open_runtime()
    if not await may_manage_schedules(config.authorize_schedules, runtime.pm.hook.flue_authorize_schedules, request):
        return route_not_found(request)
    action = request.path_params["action"]
    if action not in ("pause", "resume"):
        return route_not_found(request)
    if request.method != "POST":
        raise MethodNotAllowed(request.method, ["POST"])
    parse_query(request, ())
    name = request.path_params["name"]
    change = schedules.pause if action == "pause" else schedules.resume
    return _json((await change(name, runtime=runtime)).model_dump(mode="json"))


def _shown(request: Request, runs: int | None) -> tuple[int, int | None]:
    """How many next ticks and last runs to show (``?ticks=``, ``?runs=``), checked before any lookup."""
    params = parse_query(request, SHOW_PARAMETERS)
    ticks = integer("ticks", params.get("ticks", DEFAULT_SHOWN), minimum=0, maximum=schedules.MAX_SHOWN)
    if "runs" in params:
        runs = integer("runs", params["runs"], minimum=0, maximum=schedules.MAX_SHOWN)
    return ticks, runs


def _json(body: Any, status_code: int = 200) -> Response:
    return JSONResponse(body, status_code=status_code, headers=PRIVATE_HEADERS)

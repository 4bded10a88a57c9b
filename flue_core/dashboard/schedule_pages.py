"""The dashboard's schedules page and its pause and resume buttons, in an app with schedules
(``create_app(..., dashboard=True, schedules_enabled=True)``).

The page, ``<prefix>/schedules``, is granted like ``GET /schedules`` (``authorize_schedules`` and its
hooks) and its script reads that listing with each schedule's next ticks and last runs. Its buttons
send ``POST <prefix>/schedules/{name}/pause`` (or ``resume``), checked in this order: the grant and the
action's name (else the same 404 as an unknown route), the method (``POST``), that the request comes
from the dashboard's own page (:mod:`.csrf`); the answer is the schedule after the change, as JSON
(or 404 ``schedule_not_found``). A refused caller cannot tell the page exists.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from flue_core import schedules
from flue_core.dashboard.csrf import check_same_site
from flue_core.dashboard.navigation import open_sections
from flue_core.dashboard.pages import render
from flue_core.http.authorization import may_manage_schedules
from flue_core.http.config import HttpConfig
from flue_core.http.endpoint import BoundEndpoint
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.error_handling import route_not_found
from flue_core.http.errors import MethodNotAllowed

ACTIONS = {"pause": schedules.pause, "resume": schedules.resume}


def schedule_routes(config: HttpConfig, prefix: str) -> list[BaseRoute]:
    """The schedules page and its actions under ``prefix``; none unless the app serves schedules."""
    if not config.schedules_enabled:
        return []
    return [
        Route(f"{prefix}/schedules", BoundEndpoint((config, prefix), _schedules_page), name="flue:dashboard-schedules"),
        Route(
            f"{prefix}/schedules/{{name}}/{{action}}",
            BoundEndpoint(config, _schedule_action),
            name="flue:dashboard-schedule-action",
        ),
    ]


async def _may_manage(config: HttpConfig, request: Request) -> bool:
    runtime = config.open_runtime()
    return await may_manage_schedules(config.authorize_schedules, runtime.pm.hook.flue_authorize_schedules, request)


async def _schedules_page(bound: tuple[HttpConfig, str], request: Request) -> Response:
    config, prefix = bound
    if not await _may_manage(config, request):
        return route_not_found(request)
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(request.method, ["GET", "HEAD"])
    sections = await open_sections(config, request)
    # The grant covers the buttons too: whoever may read schedules here may pause and resume them.
    return render(request, prefix, "schedules", "Schedules", {"mayList": "runs" in sections}, sections=sections)


async def _schedule_action(config: HttpConfig, request: Request) -> Response:
    change = ACTIONS.get(request.path_params["action"])
    if change is None or not await _may_manage(config, request):
        return route_not_found(request)
    if request.method != "POST":  # nothing changes on a GET, whoever sends it
        raise MethodNotAllowed(request.method, ["POST"])
    check_same_site(request)
    after = await change(request.path_params["name"], runtime=config.runtime)
    return JSONResponse(after.model_dump(mode="json"), headers=PRIVATE_HEADERS)

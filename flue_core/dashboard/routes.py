"""The dashboard's routes under its prefix: the runs page, a run's page, its actions, its static files
(and, in an app with schedules, the schedules page: :mod:`.schedule_pages`).

Every page is granted like the API it reads: the runs page like ``GET /runs`` (``authorize_run_list``
and its hooks), a run's page like ``GET /runs/{id}`` (``authorize_run_read`` and its hooks). A refused
caller, like one asking for an unknown run, gets exactly the app's answer to an unknown route (404
``route_not_found``), before the method is looked at: an unauthorized browser cannot tell there is a
dashboard. Only the static files (the same for everyone, shipped in the package) are served to anyone.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from flue_core import runs
from flue_core.dashboard.actions import granted_actions, take_action
from flue_core.dashboard.navigation import open_sections
from flue_core.dashboard.pages import STATIC, render
from flue_core.dashboard.schedule_pages import schedule_routes
from flue_core.errors import ConfigurationError
from flue_core.http.authorization import may_list_runs, may_read_run
from flue_core.http.config import HttpConfig
from flue_core.http.endpoint import BoundEndpoint
from flue_core.http.error_handling import route_not_found
from flue_core.http.errors import MethodNotAllowed
from flue_core.models import RunStatus

_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
#: First path segments the API answers; a dashboard there would shadow it or be shadowed.
_TAKEN = frozenset({"workflows", "runs", "streams", "schedules"})


def dashboard_routes(config: HttpConfig, prefix: str) -> list[BaseRoute]:
    """The routes of a dashboard under ``prefix`` (``/dashboard``, ``/ops/flue``...), for ``create_app``."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or prefix.split("/")[1] in _TAKEN:
        raise ConfigurationError(
            f"dashboard_prefix must be a path such as '/dashboard' (no trailing '/'), outside"
            f" {', '.join('/' + name for name in sorted(_TAKEN))}; not {prefix!r}.",
            details={"dashboard_prefix": prefix},
        )
    runs_page = BoundEndpoint((config, prefix), _runs_page)
    return [
        Route(prefix, runs_page, name="flue:dashboard"),  # the same page: no redirect before the grant
        Route(f"{prefix}/", runs_page, name="flue:dashboard-runs"),
        Route(f"{prefix}/runs/{{run_id}}", BoundEndpoint((config, prefix), _run_page), name="flue:dashboard-run"),
        Route(f"{prefix}/runs/{{run_id}}/{{action}}", BoundEndpoint(config, take_action), name="flue:dashboard-action"),
        *schedule_routes(config, prefix),
        Mount(f"{prefix}/static", app=_Static(directory=STATIC), name="flue:dashboard-static"),
    ]


async def _runs_page(bound: tuple[HttpConfig, str], request: Request) -> Response:
    config, prefix = bound
    runtime = config.open_runtime()
    if not await may_list_runs(config.authorize_run_list, runtime.pm.hook.flue_authorize_run_list, request):
        return route_not_found(request)
    _page_method(request)
    # The filters and the cursor stay in the page's query string, read by its script and sent to
    # GET /runs, which checks them as it checks any caller's.
    data = {"statuses": [status.value for status in RunStatus]}
    return render(request, prefix, "runs", "Runs", data, sections=await open_sections(config, request))


async def _run_page(bound: tuple[HttpConfig, str], request: Request) -> Response:
    config, prefix = bound
    runtime = config.open_runtime()
    record = await runs.get(request.path_params["run_id"], runtime=runtime)
    if record is None or not await may_read_run(
        config.authorize_run_read, runtime.pm.hook.flue_authorize_run_read, request, record
    ):
        return route_not_found(request)
    _page_method(request)
    may_list = await may_list_runs(config.authorize_run_list, runtime.pm.hook.flue_authorize_run_list, request)
    data = {"runId": record.run_id, "actions": await granted_actions(config, request, record), "mayList": may_list}
    sections = await open_sections(config, request)
    return render(request, prefix, "run", f"{record.workflow} {record.run_id}", data, sections=sections, run_id=record.run_id)


def _page_method(request: Request) -> None:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(request.method, ["GET", "HEAD"])


class _Static(StaticFiles):
    """The dashboard's files. Pages name them with a digest of their content (``?v=``), so a named
    version never changes and browsers keep it; without one, browsers check with the ETag."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned = b"v=" in scope.get("query_string", b"")
        cache = "public, max-age=31536000, immutable" if versioned else "no-cache"

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", cache.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)

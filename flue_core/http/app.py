"""The ASGI app: ``create_app(runtime, ...)`` returns a Starlette app to serve or mount."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flue_core.errors import ConfigurationError
from flue_core.http.authorization import (
    RunCancelAuthorizer,
    RunListAuthorizer,
    RunReadAuthorizer,
    RunRerunAuthorizer,
    RunSignalAuthorizer,
    SchedulesAuthorizer,
)
from flue_core.http.cancel_route import cancel_run
from flue_core.limits import DEFAULT_MAX_BODY_SIZE
from flue_core.http.config import HttpConfig
from flue_core.http.direct import FlueApp
from flue_core.http.endpoint import BoundEndpoint
from flue_core.http.error_handling import ErrorEnvelope, http_exception
from flue_core.http.rerun_route import rerun_run
from flue_core.http.route_middleware import check_route_middleware
from flue_core.http.run_routes import list_runs, read_run
from flue_core.http.schedule_routes import schedule_action, schedule_item, schedules_collection
from flue_core.http.signal_route import signal_run
from flue_core.http.workflow_route import post_workflow
from flue_core.runtime import Runtime
from flue_core.streams.server import StreamServer, streams_app
from flue_core.streams.store import StreamStore

if TYPE_CHECKING:
    from flue_core.streams import ReadOptions

#: Where ``create_app(..., streams=store)`` mounts the general stream server.
STREAMS_PREFIX = "/streams"
#: Where ``create_app(..., dashboard=True)`` serves the dashboard unless ``dashboard_prefix`` says otherwise.
DASHBOARD_PREFIX = "/dashboard"


def create_app(
    runtime: Runtime,
    *,
    open_runtime: bool = False,
    authorize_run_read: RunReadAuthorizer | None = None,
    list_runs_enabled: bool = False,
    authorize_run_list: RunListAuthorizer | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    wait_timeout: float | None = None,
    stream_options: ReadOptions | None = None,
    streams: StreamStore | None = None,
    middleware: Sequence[Middleware] = (),
    dashboard: bool = False,
    dashboard_prefix: str = DASHBOARD_PREFIX,
    authorize_run_cancel: RunCancelAuthorizer | None = None,
    authorize_run_signal: RunSignalAuthorizer | None = None,
    schedules_enabled: bool = False,
    authorize_schedules: SchedulesAuthorizer | None = None,
    authorize_run_rerun: RunRerunAuthorizer | None = None,
) -> Starlette:
    """The HTTP surface of ``runtime``: ``POST /workflows/{name}``, ``GET|HEAD /runs/{run_id}``,
    ``POST /runs/{run_id}/cancel``, ``POST /runs/{run_id}/signals/{name}``,
    ``POST /runs/{run_id}/rerun``, when
    ``list_runs_enabled`` ``GET /runs``, when ``schedules_enabled`` the ``/schedules`` routes
    (:mod:`flue_core.http.schedule_routes`), and with ``streams`` a general Durable Streams server
    over that store at ``/streams/{path}`` (:func:`~flue_core.streams.server.streams_app`).

    Lifetime: by default the host owns the runtime and opens it (``async with runtime:``), for example
    in its own lifespan; requests made while it is closed get 503 ``runtime_not_running``. With
    ``open_runtime=True`` the app's lifespan opens the runtime at start-up and closes it at shutdown
    (a server such as uvicorn runs that lifespan; a Starlette ``Mount`` does not, so a host that mounts
    the app opens the runtime itself). The stream server, ``app.state.streams``, has the same
    lifetime: opened by the app's lifespan with ``open_runtime=True``, otherwise by the host
    (``async with runtime, app.state.streams:``); until then stream requests get 503
    ``store_unavailable``.

    Run reads are refused unless ``authorize_run_read(request, run)`` or a ``flue_authorize_run_read``
    hook grants them; likewise the listing with ``authorize_run_list(request)`` /
    ``flue_authorize_run_list``; cancelling, signalling and re-running, to callers granted reading
    the run, with ``authorize_run_cancel(request, run)`` / ``flue_authorize_run_cancel``,
    ``authorize_run_signal(request, run)`` / ``flue_authorize_run_signal`` and
    ``authorize_run_rerun(request, run)`` / ``flue_authorize_run_rerun``; schedules with
    ``authorize_schedules(request)`` / ``flue_authorize_schedules``. Request bodies larger than
    ``max_body_size`` bytes are refused while being read. ``?wait=result`` waits at most ``wait_timeout`` seconds (``None``: until the run ends).
    ``stream_options`` tunes stream reads, of runs and of ``streams`` (long-poll timeout, SSE
    heartbeat and duration...). ``middleware`` is Starlette middleware around every route, the stream
    server's included (inside the error envelope, so what it raises is answered as an envelope too).
    The app's ``state.runtime`` is ``runtime``; ``state.streams`` the stream server, or ``None``.

    ``dashboard=True`` serves the web dashboard (:mod:`flue_core.dashboard`) under ``dashboard_prefix``
    and turns the listing on, which its runs page reads. Its pages are granted by the same authorizers
    as the API (the runs page by ``authorize_run_list``, a run's page by ``authorize_run_read``); its
    cancel and re-run buttons like ``POST /runs/{run_id}/cancel`` and ``POST /runs/{run_id}/rerun``.
    ``state.dashboard`` is the prefix, or ``None``.
    """
    if not isinstance(max_body_size, int) or max_body_size < 0:
        raise ConfigurationError(f"max_body_size must be a number of bytes >= 0, not {max_body_size!r}.")
    if wait_timeout is not None and not wait_timeout > 0:
        raise ConfigurationError(f"wait_timeout must be > 0 seconds or None, not {wait_timeout!r}.")
    list_runs_enabled = list_runs_enabled or dashboard
    if authorize_run_list is not None and not list_runs_enabled:
        raise ConfigurationError("authorize_run_list has no effect unless list_runs_enabled=True.")
    if authorize_schedules is not None and not schedules_enabled:
        raise ConfigurationError("authorize_schedules has no effect unless schedules_enabled=True.")
    check_route_middleware([wf for wf in runtime.registry if wf.http])
    if streams is not None and not isinstance(streams, StreamStore):
        raise ConfigurationError(f"streams must be a StreamStore or None, not {streams!r}.")
    config = HttpConfig(
        runtime,
        max_body_size,
        wait_timeout,
        authorize_run_read,
        authorize_run_list,
        stream_options,
        authorize_run_cancel,
        authorize_run_signal,
        authorize_schedules,
        authorize_run_rerun,
        schedules_enabled=schedules_enabled,
    )
    workflow_route = Route("/workflows/{name}", BoundEndpoint(config, post_workflow), name="flue:workflow")
    routes: list[BaseRoute] = [
        workflow_route,
        Route("/runs/{run_id}", BoundEndpoint(config, read_run), name="flue:run"),
        Route("/runs/{run_id}/cancel", BoundEndpoint(config, cancel_run), name="flue:cancel"),
        Route("/runs/{run_id}/signals/{name}", BoundEndpoint(config, signal_run), name="flue:signal"),
        Route("/runs/{run_id}/rerun", BoundEndpoint(config, rerun_run), name="flue:rerun"),
    ]
    if list_runs_enabled:
        routes.append(Route("/runs", BoundEndpoint(config, list_runs), name="flue:runs"))
    if schedules_enabled:
        routes += [
            Route("/schedules", BoundEndpoint(config, schedules_collection), name="flue:schedules"),
            Route("/schedules/{name}", BoundEndpoint(config, schedule_item), name="flue:schedule"),
            Route("/schedules/{name}/{action}", BoundEndpoint(config, schedule_action), name="flue:schedule-action"),
        ]
    server: StreamServer | None = None
    if streams is not None:
        stream_app = streams_app(streams, open_store=False, read_options=stream_options)
        server = stream_app.state.streams
        routes.append(Mount(STREAMS_PREFIX, app=stream_app, name="flue:streams"))
    if dashboard:
        from flue_core.dashboard.routes import dashboard_routes  # only apps with a dashboard load it

        routes.extend(dashboard_routes(config, dashboard_prefix))
    app = FlueApp(
        routes=routes,
        middleware=[Middleware(LearnPublicUrl, runtime=runtime), Middleware(ErrorEnvelope), *middleware],
        exception_handlers={HTTPException: http_exception},
        lifespan=_opening(runtime, server) if open_runtime else None,
    )
    if not middleware:  # the app's own middleware sees every request: admissions too take its way
        app.answer_admissions_directly(config, workflow_route)
    app.router.redirect_slashes = False  # ``/runs/x/`` is an unknown route (404 envelope), not a 307
    app.state.runtime = runtime
    app.state.streams = server
    app.state.dashboard = dashboard_prefix if dashboard else None
    return app


class LearnPublicUrl:
    """Tells the runtime the path its app is served under, from each request's ``root_path``, so the
    receipts of ``workflows.start()`` name the stream where this app serves it (:mod:`flue_core.public_url`)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.runtime.learn_public_url(scope.get("root_path", ""))
        await self.app(scope, receive, send)


def _opening(runtime: Runtime, streams: StreamServer | None) -> Callable[[Starlette], AsyncIterator[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as opened:
            await opened.enter_async_context(runtime)
            if streams is not None:
                await opened.enter_async_context(streams)
            yield

    return lifespan

"""Turning whatever goes wrong into the one envelope: unknown routes, Starlette's HTTP errors, raised
:class:`~flue_core.errors.FlueError` and unexpected exceptions (logged, never described to the client)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flue_core.errors import FlueError, RuntimeNotRunning
from flue_core.http.envelope import error_response
from flue_core.http.errors import HttpError, InternalError, RouteNotFound

log = logging.getLogger("flue.http")


def route_not_found(request: Request) -> Response:
    return error_response(RouteNotFound(f"No route matches {request.method} {request.url.path}."))


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own ``HTTPException`` (the router's 404, a redirect-less mismatch...) as an envelope."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return route_not_found(request)
    return error_response(HttpError(str(exc.detail), headers=exc.headers, status=exc.status_code))


class ErrorEnvelope:
    """Outermost middleware of the app: a :class:`FlueError` from anywhere inside (endpoints, route or
    app middleware) becomes its envelope; any other exception is logged and becomes a 500
    ``internal_error`` envelope that says nothing about it. After the response has started nothing
    can be sent: the error is logged and the response is cut short."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # nobody is left to answer
        except FlueError as exc:
            if isinstance(exc, RuntimeNotRunning):  # the app's state, not this request's fault: no traceback
                log.warning("flue: %s %s answered 503: %s", scope["method"], scope["path"], exc)
            elif exc.status >= 500:
                log.error("flue: %s %s failed: %s", scope["method"], scope["path"], exc, exc_info=exc)
            if not started:
                await error_response(exc)(scope, receive, send)
        except Exception as exc:
            log.exception("flue: %s %s failed unexpectedly", scope["method"], scope["path"], exc_info=exc)
            if not started:
                await error_response(InternalError())(scope, receive, send)

"""Per-workflow route middleware: the authentication boundary of ``POST /workflows/<name>``.

A workflow's ``middleware`` is a sequence of ``async def mw(request, call_next) -> Response``, the first
one outermost. It runs after the workflow is known to be exposed and before the body is read or
anything is stored, so a middleware that returns a response without calling ``call_next`` rejects the
request with no run created. ``await call_next(request)`` returns the response of the rest of the chain
(errors already turned into their envelope), which the middleware may change or replace. To pass an
authenticated identity to admission policies, set ``request.state.principal``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flue_core.definition import Workflow
from flue_core.errors import ConfigurationError

Handler = Callable[[Request], Awaitable[Response]]
RouteMiddleware = Callable[[Request, Handler], Awaitable[Response]]


def check_route_middleware(workflows: Sequence[Workflow]) -> None:
    """Refuse, at app creation, middleware that cannot be called (a typo should not fail per request)."""
    for wf in workflows:
        for mw in wf.middleware:
            if not callable(mw):
                raise ConfigurationError(
                    f"Workflow {wf.name!r} has middleware {mw!r}, which is not callable;"
                    " use `async def mw(request, call_next) -> Response`."
                )


async def through_middleware(wf: Workflow, request: Request, handler: Handler) -> Response:
    """``handler(request)`` wrapped in ``wf.middleware``, first outermost."""
    if not wf.middleware:
        return await handler(request)
    return await _layer(wf, 0, request, handler)


async def _layer(wf: Workflow, depth: int, request: Request, handler: Handler) -> Response:
    if depth == len(wf.middleware):
        return await handler(request)
    mw: Any = wf.middleware[depth]
    called = False

    async def call_next(inner: Request) -> Response:
        nonlocal called
        if called:
            raise ConfigurationError(f"Route middleware {mw!r} of workflow {wf.name!r} called call_next twice.")
        called = True
        return await _layer(wf, depth + 1, inner, handler)

    response = await mw(request, call_next)
    if not isinstance(response, Response):
        raise ConfigurationError(
            f"Route middleware {mw!r} of workflow {wf.name!r} returned {response!r}; it must return a Response."
        )
    return response

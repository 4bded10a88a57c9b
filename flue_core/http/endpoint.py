"""An endpoint function with its first argument bound, as an ASGI app for a Starlette ``Route``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import Receive, Scope, Send

Bound = TypeVar("Bound")


class BoundEndpoint(Generic[Bound]):
    """``endpoint(bound, request)`` as an ASGI app. Starlette routes every method to an ASGI endpoint (a
    function endpoint would be ``GET`` only), so the endpoint answers 405 in its own order of checks:
    after authorization, say, so that a refused caller cannot tell the route exists."""

    def __init__(self, bound: Bound, endpoint: Callable[[Bound, Request], Awaitable[Response]]) -> None:
        async def handle(request: Request) -> Response:
            return await endpoint(bound, request)

        self._app = request_response(handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

"""The app ``create_app`` returns: Starlette, with ``POST /workflows/{name}`` answered directly.

Admission is the one request that comes by the thousand per second, and Starlette's layers around an
endpoint (its error and exception middleware, the app's own, the router's scan and the route's
wrapper) cost as much CPU as the endpoint itself. While the app still has only the middleware and
routes ``create_app`` gave it, :class:`FlueApp` sends those requests straight to the same endpoint
(:func:`~flue_core.http.workflow_route.post_workflow`) inside the same error envelope, with what the
skipped layers did for it: the path parameter and the runtime's public URL. Every other request, and
every request once middleware was added to the app or a route put before the workflow route, takes
Starlette's way.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from flue_core.http.config import HttpConfig
from flue_core.http.error_handling import ErrorEnvelope, http_exception
from flue_core.http.workflow_route import post_workflow

PREFIX = "/workflows/"


class FlueApp(Starlette):
    """A Starlette app that answers ``POST /workflows/{name}`` without its layers while it has none of
    its own (see the module's docstring); otherwise a plain Starlette app."""

    _direct: DirectAdmission | None = None

    def answer_admissions_directly(self, config: HttpConfig, route: BaseRoute) -> None:
        """Take the direct way while the middleware is what the app has now and ``route`` (the workflow
        route) comes first."""
        self._direct = DirectAdmission(config, route, len(self.user_middleware))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self._direct
        if direct is not None and scope["type"] == "http" and scope["method"] == "POST":
            name = direct.workflow_name(scope)
            if name is not None and direct.still_applies(self):
                scope["app"] = self
                scope["path_params"] = {**scope.get("path_params", {}), "name": name}  # as the route's match
                await direct.envelope(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class DirectAdmission:
    """What the skipped layers did for an admission: the error envelope, the public URL, the route's
    path parameter and request; then the endpoint."""

    def __init__(self, config: HttpConfig, route: BaseRoute, middleware: int) -> None:
        self._config = config
        self._route = route
        self._middleware = middleware
        self.envelope = ErrorEnvelope(self._admit)

    def still_applies(self, app: Starlette) -> bool:
        routes = app.router.routes
        return len(app.user_middleware) == self._middleware and bool(routes) and routes[0] is self._route

    @staticmethod
    def workflow_name(scope: Scope) -> str | None:
        """The ``{name}`` of ``/workflows/{name}`` (one path segment, as the route matches it), or ``None``."""
        path = get_route_path(scope)
        if not path.startswith(PREFIX):
            return None
        name = path[len(PREFIX) :]
        return name if name and "/" not in name else None

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._config.runtime.learn_public_url(scope.get("root_path", ""))  # as LearnPublicUrl does
        request = Request(scope, receive, send)
        try:
            response = await post_workflow(self._config, request)
        except HTTPException as exc:  # what the exception middleware answers on Starlette's way
            response = await http_exception(request, exc)
        await response(scope, receive, send)

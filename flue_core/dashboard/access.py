"""Access to a local dashboard by a secret link, as Jupyter does: ``flue dashboard`` and the example app.

A server on 127.0.0.1 is reachable by every user and every web page of the machine, so "local" is
not a grant. :class:`LinkAccess` holds a random token; the printed link carries it once
(``...?token=...``), the app answers that request by setting an ``HttpOnly`` cookie and redirecting to
the same URL without the token, and from then on the browser is granted by its cookie. A program may
send ``Authorization: Bearer <token>`` instead.

An application with users of its own grants through its own authorizers instead (see
``docs/dashboard.md``); this is for a developer's own machine.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

QUERY = "token"


class LinkAccess:
    """Grants the holder of ``token`` (random by default) everything the dashboard offers.

    ``create_app(runtime, dashboard=True, **access.app_options())`` wires it in; ``access.link(url)``
    is the link to hand to the browser.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        # Named after the token: browsers share cookies between the ports of a host, and two local
        # dashboards must not overwrite each other's.
        self.cookie = "flue_access_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def link(self, url: str) -> str:
        """``url`` with the token, for the browser's first visit."""
        return f"{url}{'&' if '?' in url else '?'}{urlencode({QUERY: self.token})}"

    def granted(self, request: Request, run: Any = None) -> bool | None:
        """``True`` for a request with the cookie or the bearer token; ``None`` (let plugins decide) otherwise.

        Fits ``authorize_run_read``, ``authorize_run_list``, ``authorize_run_cancel``,
        ``authorize_run_signal``, ``authorize_run_rerun`` and ``authorize_schedules`` alike."""
        sent = request.cookies.get(self.cookie) or request.headers.get("authorization", "").removeprefix("Bearer ")
        return True if sent and secrets.compare_digest(sent.encode(), self.token.encode()) else None

    def app_options(self, *, schedules: bool = False) -> dict[str, Any]:
        """The ``create_app`` options that grant through this link: the middleware and the authorizers;
        with ``schedules``, the schedules too (``schedules_enabled`` and ``authorize_schedules``)."""
        options: dict[str, Any] = {
            "middleware": [Middleware(_TokenToCookie, access=self)],
            "authorize_run_read": self.granted,
            "authorize_run_list": self.granted,
            "authorize_run_cancel": self.granted,
            "authorize_run_signal": self.granted,
            "authorize_run_rerun": self.granted,
        }
        if schedules:
            options.update(schedules_enabled=True, authorize_schedules=self.granted)
        return options


class _TokenToCookie:
    """A ``GET`` carrying the right ``?token=`` is answered with the cookie and a redirect to the same
    URL without the token (kept out of the address bar, history and ``Referer``); anything else passes."""

    def __init__(self, app: ASGIApp, access: LinkAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope.get("query_string"):
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            tokens = [value for name, value in query if name == QUERY]
            if len(tokens) == 1 and secrets.compare_digest(tokens[0].encode(), self.access.token.encode()):
                rest = urlencode([(name, value) for name, value in query if name != QUERY])
                location = scope["path"] + (f"?{rest}" if rest else "")  # the full path, mount included
                response = RedirectResponse(location, status_code=303, headers={"cache-control": "no-store"})
                response.set_cookie(
                    self.access.cookie,
                    self.access.token,
                    path="/",
                    httponly=True,
                    samesite="lax",
                    secure=scope.get("scheme") == "https",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

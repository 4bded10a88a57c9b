"""Keeping other sites from acting through a signed-in browser (cross-site request forgery).

The dashboard changes state only with ``POST`` (never ``GET``), and a ``POST`` is accepted only when

1. the browser says it comes from this origin: ``Sec-Fetch-Site: same-origin`` where the browser sends
   it, and an ``Origin`` whose host and port are this request's ``Host`` (every current browser sends
   ``Origin`` on a ``POST``; a request with neither header is refused, as no page of ours sends one); and
2. it carries the page's token in the ``X-Flue-CSRF`` header, equal to the ``SameSite=Strict``,
   ``HttpOnly`` cookie set with the page (a "double submit"). Another site can neither read that
   cookie nor send a custom header without a CORS preflight, which the app does not answer.

Either check alone stops a forged request in a current browser; both together also cover browsers and
proxies that get one of them wrong. Behind a reverse proxy, keep the ``Host`` header the browser sent
(nginx: ``proxy_set_header Host $host;``) so the origin check compares like with like.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from flue_core.http.errors import CrossSiteRequest

HEADER = "x-flue-csrf"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def cookie_name(request: Request) -> str:
    """``flue_csrf``, suffixed with the port: browsers share cookies between the ports of one host, so
    two local dashboards (say on 3583 and 3584) would otherwise overwrite each other's token."""
    port = request.headers.get("host", "").rpartition(":")[2]
    return f"flue_csrf_{port}" if port.isdigit() else "flue_csrf"


def page_token(request: Request) -> str:
    """The token a page embeds: the browser's current one (other open tabs keep working), else a new one."""
    token = request.cookies.get(cookie_name(request), "")
    return token if _TOKEN.fullmatch(token) else secrets.token_urlsafe(32)


def set_token_cookie(response: Response, request: Request, token: str, path: str) -> None:
    """Send ``token`` as the cookie the checks compare with, for the dashboard's paths only."""
    response.set_cookie(
        cookie_name(request),
        token,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def check_same_site(request: Request) -> None:
    """Raise :class:`~flue_core.http.errors.CrossSiteRequest` unless the request passes both checks above."""
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if fetch_site is not None and fetch_site != "same-origin":
        raise CrossSiteRequest(f"Refused a request from another site (Sec-Fetch-Site: {fetch_site}).")
    if origin is None and fetch_site is None:
        raise CrossSiteRequest("Refused a request without an Origin: send it from the dashboard's page.")
    if origin is not None and not _same_host(origin, request.headers.get("host", "")):
        raise CrossSiteRequest(f"Refused a request from another origin ({origin}).")
    sent = request.headers.get(HEADER, "")
    expected = request.cookies.get(cookie_name(request), "")
    if not (_TOKEN.fullmatch(sent) and _TOKEN.fullmatch(expected) and secrets.compare_digest(sent, expected)):
        raise CrossSiteRequest("The page's anti-forgery token is missing or stale: reload the page and try again.")


def _same_host(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names ``host`` (the ``Host`` header), default ports
    counted. The scheme is not compared: behind a TLS proxy the app itself may be reached over http."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    own_host, _, own_port = host.lower().rpartition(":") if not host.endswith("]") else (host.lower(), "", "")
    if not own_host or not own_port.isdigit():  # no port in Host: the scheme's default
        own_host, own_port = host.lower(), _DEFAULT_PORTS[parts.scheme]
    origin_host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return origin_host == own_host and str(port or _DEFAULT_PORTS[parts.scheme]) == own_port

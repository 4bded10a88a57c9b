"""Errors only the HTTP surface raises: malformed requests, wrong methods, unknown routes.

They are :class:`~flue_core.errors.FlueError` subclasses like every other error, so they reach the client
through the one envelope. ``headers`` are response headers the error needs (``Allow`` on a 405).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flue_core.errors import FlueError


class HttpError(FlueError):
    """An error about the HTTP request itself; ``headers`` go on the error response."""

    code = "invalid_request"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.headers: dict[str, str] = dict(headers or {})
        if status is not None:
            self.status = status


class InvalidJson(HttpError):
    """The body is not JSON (or not UTF-8, or uses ``NaN``/``Infinity``, which JSON does not have)."""

    code = "invalid_json"
    status = 400


class BodyTooLarge(HttpError):
    """The body is larger than the app's ``max_body_size``; reading stopped at the limit."""

    code = "body_too_large"
    status = 413


class UnsupportedMediaType(HttpError):
    """A body was sent with a content type other than ``application/json`` (or ``*/*+json``)."""

    code = "unsupported_media_type"
    status = 415


class UnexpectedBody(HttpError):
    """A body sent to a route that takes none (``POST /runs/{id}/cancel``): refused, not ignored, so a
    caller who meant something by it (a reason, say) learns it was not read."""

    code = "unexpected_body"


class MethodNotAllowed(HttpError):
    code = "method_not_allowed"
    status = 405

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        allow = ", ".join(allowed)
        super().__init__(
            f"Method {method} is not allowed here; use {allow}.",
            details={"method": method, "allow": allow},
            headers={"Allow": allow},
        )


class RouteNotFound(HttpError):
    code = "route_not_found"
    status = 404


class InternalError(HttpError):
    """Something failed that was not meant to; the cause is logged, never sent."""

    code = "internal_error"
    status = 500

    def __init__(self) -> None:
        super().__init__("An internal error occurred.")


class CrossSiteRequest(HttpError):
    """A state-changing dashboard request that did not come from the dashboard's own page: another
    origin, or without the page's anti-forgery token (:mod:`flue_core.dashboard.csrf`)."""

    code = "cross_site_request"
    status = 403


class ActionDenied(HttpError):
    """The caller may read the run but the app does not grant this action on it (``authorize_run_cancel``,
    ``authorize_run_signal``, ``authorize_run_rerun``)."""

    code = "action_denied"
    status = 403

"""The one JSON error envelope every HTTP endpoint answers errors with."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from flue_core.errors import FlueError

#: Headers on every error response, and on run records and pages (private to whoever was granted them,
#: and changing): no sniffing, no caching.
PRIVATE_HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


def error_response(error: FlueError, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"error": {"code", "message", "details"?}}`` with the error's HTTP status.

    Headers the error itself carries (``Allow`` of a 405) are added, then ``headers``.
    """
    own = getattr(error, "headers", None) or {}
    return JSONResponse(
        {"error": error.to_dict()}, status_code=error.status, headers={**PRIVATE_HEADERS, **own, **(headers or {})}
    )

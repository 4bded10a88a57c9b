"""The one JSON error envelope every HTTP endpoint answers errors with."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from flue_core.errors import FlueError

#: Headers on every error response: no sniffing, no caching of errors.
ERROR_HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


def error_response(error: FlueError, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"error": {"code", "message", "details"?}}`` with the error's HTTP status."""
    return JSONResponse({"error": error.to_dict()}, status_code=error.status, headers={**ERROR_HEADERS, **(headers or {})})

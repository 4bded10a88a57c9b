"""The HTTP surface (Starlette): workflow admission, run reads, and the Durable Streams mount.

``create_app(runtime, ...)`` builds the ASGI app; ``error_response(error)`` is the one error envelope;
``serve(app)`` runs an app with uvicorn on a local port for as long as a block lasts (tests, tools).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "error_response", "serve"]

_HOMES = {
    "create_app": "flue_core.http.app",
    "error_response": "flue_core.http.envelope",
    "serve": "flue_core.http.server",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that modules the app itself imports (the stream read side needs the
    # envelope) can import from this package without loading the app first.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The HTTP surface (Starlette): workflow admission, run reads, and the Durable Streams mount.

``create_app(runtime, ...)`` builds the ASGI app; ``error_response(error)`` is the one error envelope;
``serve(app)`` runs an app with uvicorn on a local port for as long as a block lasts (tests, tools).
"""

from flue_core.http.app import create_app
from flue_core.http.envelope import error_response
from flue_core.http.server import serve

__all__ = ["create_app", "error_response", "serve"]

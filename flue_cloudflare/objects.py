"""The base of the target's Durable Object classes: one RPC method, ``op(name, json)``.

Each operation ``name`` is the object's method ``_op_<name>``, taking the decoded request and
returning something JSON can carry. A :class:`~flue_core.errors.FlueError` it raises is answered as
``{"e": ...}`` and raised again by the caller (:func:`flue_cloudflare.calls.call`). While an
operation, request or alarm is handled, :func:`flue_cloudflare.calls.handling` names the object, so
the store performs operations on the object itself without a call, and without JSON
(:meth:`FlueObject.perform`).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, ClassVar

from workers import DurableObject

from flue_core.errors import ConfigurationError, FlueError
from flue_cloudflare import calls, codec
from flue_cloudflare.app import FlueApp, current_app
from flue_cloudflare.sql import Sql

log = logging.getLogger("flue.cloudflare")


class FlueObject(DurableObject):
    """A Durable Object of the target. ``binding`` is the namespace's binding name; ``object_name``
    the name the object was reached by (``idFromName``), ``scope`` and ``name`` its parts
    (:func:`flue_cloudflare.calls.scoped`)."""

    binding: ClassVar[str]

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.sql = Sql(ctx.storage)
        self.object_name = str(ctx.id.name)
        self.scope, self.name = calls.unscoped(self.object_name)

    @property
    def app(self) -> FlueApp:
        return current_app()

    async def op(self, name: str, body: str) -> str:
        """Perform the operation ``name`` with the JSON request ``body``; answer JSON."""
        with calls.serving(self):
            try:
                answer = await self.perform(name, codec.loads(body))
            except FlueError as error:
                answer = {"e": codec.error_wire(error)}
            return codec.dumps(answer)

    async def perform(self, name: str, request: Any) -> dict[str, Any]:
        """Perform the operation ``name``; answer what :meth:`op` sends as JSON (a
        :class:`~flue_core.errors.FlueError` is raised). The store calls it directly for the object
        serving the current event (its own run), without the JSON in between."""
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            raise ConfigurationError(f"{type(self).__name__} has no operation {name!r}.")
        await self.app.open(self.env)
        result = handler(request)
        if inspect.isawaitable(result):
            result = await result
        return await self._answer(result)

    async def _answer(self, result: Any) -> dict[str, Any]:
        """The answer to an operation that returned ``result`` (subclasses add what changed)."""
        return {"r": result}

    def stub(self, binding: str, name: str) -> Any:
        """The stub of object ``name`` of ``binding`` in this object's scope."""
        return calls.stub(self.env, binding, calls.scoped(self.scope, name))

    async def _set_alarm(self, at_ms: float | None) -> None:
        storage = self.sql.storage
        if at_ms is None:
            await storage.deleteAlarm()
        else:
            await storage.setAlarm(at_ms)

"""A test Worker's door to the target's store: ``POST <path>/<operation>`` performs one
:class:`~flue_core.store.RunStore` operation on the Durable Objects (:mod:`flue_cloudflare.store_wire`).

Only for Workers made to test the store from outside (``flue_cloudflare.devtools.RemoteRunStore``):
it grants anyone every operation on every run, so never route it in an application.
"""

from __future__ import annotations

from typing import Any

from flue_core.errors import FlueError
from flue_cloudflare import codec
from flue_cloudflare.app import current_app
from flue_cloudflare.store import ObjectStore
from flue_cloudflare.store_wire import OPS


async def perform(op: str, body: str, env: Any, scope: str = "") -> str:
    """Perform the store operation ``op`` with the JSON request ``body`` on the objects of ``scope``;
    answer JSON: ``{"r": result, "c": [what changed]}`` or ``{"e": error}``."""
    app = current_app()
    await app.open(env)
    changed: list[str] = []
    store = ObjectStore(env, limits_in_objects=app.execute, scope=scope)
    await store.open(changed.extend)
    operation = OPS.get(op)
    if operation is None:
        return codec.dumps({"e": {"code": "route_not_found", "message": f"No store operation {op!r}.", "details": {}}})
    try:
        result = await operation.perform(store, codec.loads(body))
        await store.flush()
    except FlueError as error:
        return codec.dumps({"e": codec.error_wire(error)})
    app.notify(changed)
    return codec.dumps({"r": operation.answer(result), "c": sorted(set(changed))})

"""The Cloudflare target: a Python Worker with one Durable Object per run.

A Worker's main module makes a :class:`FlueApp` with its workflows, exports the target's Durable
Object classes and uses :class:`FlueWorker` as its entrypoint::

    from flue_cloudflare import FlueApp, FlueWorker
    from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes

    app = FlueApp([daily_summary], authorize_run_read=lambda request, run: ...)

    class Default(FlueWorker):
        async def scheduled(self, controller, env=None, ctx=None):
            await workflows.start(daily_summary, input={...})

The object classes and :class:`FlueWorker` exist only inside a Worker (they are made of the Workers
runtime's classes). Names are imported on first use, so that loading the ``flue`` entry point
(``flue_cloudflare.plugin``) in any process costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "CloudflareTarget": "flue_cloudflare.target",
    "FlueApp": "flue_cloudflare.app",
    "current_app": "flue_cloudflare.app",
    "FlueWorker": "flue_cloudflare.entry",
    "RunObject": "flue_cloudflare.run_object",
    "IndexObject": "flue_cloudflare.index_object",
    "ScheduleObject": "flue_cloudflare.schedule_object",
    "LimitObject": "flue_cloudflare.limit_object",
    "StreamObject": "flue_cloudflare.streams",
}

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'flue_cloudflare' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""``FlueWorker``: the Worker entrypoint of a Flue application.

Subclass it as the Worker's ``Default`` entrypoint. ``fetch`` serves the HTTP surface of the
application's :class:`~flue_cloudflare.FlueApp`; ``scheduled`` admits the due ticks of Flue's
schedules (a safety net: the schedules object's alarm admits them on time anyway). Override
``scheduled`` and ``queue`` to start runs from cron triggers and queues; the runtime is open while
they run, so ``await workflows.start(...)`` and ``runs.*`` work as anywhere else::

    class Default(FlueWorker):
        async def scheduled(self, controller, env=None, ctx=None):
            await workflows.start(daily_summary, input={"scheduled_at": controller.scheduledTime})
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from workers import WorkerEntrypoint

from flue_cloudflare.app import current_app

HANDLERS = ("fetch", "scheduled", "queue")


class FlueWorker(WorkerEntrypoint):
    """The entrypoint of a Worker serving a :class:`~flue_cloudflare.FlueApp`."""

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__(**options)
        for name in HANDLERS:
            handler = cls.__dict__.get(name)
            if handler is not None:
                setattr(cls, name, _with_runtime(handler))

    async def fetch(self, request: Any) -> Any:
        return await current_app().serve(request, self.env)

    # workerd passes (event, env, ctx) to scheduled() and queue(), as to a module Worker's handlers.
    async def scheduled(self, controller: Any, env: Any = None, ctx: Any = None) -> None:
        await current_app().tick_schedules(self.env)


def _with_runtime(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``handler`` with the application's runtime opened first (the current runtime while it runs)."""

    @functools.wraps(handler)
    async def opened(self: FlueWorker, *args: Any, **kwargs: Any) -> Any:
        await current_app().ready(self.env)
        return await handler(self, *args, **kwargs)

    return opened

"""A Flue application served by a Python Worker: :class:`FlueApp`.

One ``FlueApp`` is made at the top of the Worker's main module. It holds what the application is —
its workflows, plugins and HTTP options — and, per isolate, the one :class:`~flue_core.Runtime` that
the Worker's handlers and the target's Durable Objects share: built and opened on first use (a Worker
has no start-up hook), then kept for the isolate's life. The runtime finds the Cloudflare target by
detection, through the ``flue`` entry points like every other process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from starlette.applications import Starlette
from starlette.routing import Mount

from flue_core.discovery import WorkflowSource
from flue_core.errors import ConfigurationError
from flue_core.http import create_app
from flue_core.http.app import STREAMS_PREFIX
from flue_core.models import utc_now
from flue_core.runtime import Runtime
from flue_core.scheduler import sync_declared_schedules, tick
from flue_cloudflare import calls
from flue_cloudflare.changes import PollingLock, waiting_for_results
from flue_cloudflare.serving import serve_asgi
from flue_cloudflare.target import CloudflareTarget

log = logging.getLogger("flue.cloudflare")

_current: FlueApp | None = None


def current_app() -> FlueApp:
    """The application of this Worker (made by its main module)."""
    if _current is None:
        raise ConfigurationError(
            "No FlueApp exists in this Worker: make one at the top of the main module,"
            " e.g. `app = FlueApp([my_workflow])`."
        )
    return _current


class FlueApp:
    """The workflows a Worker serves, and the runtime its handlers and Durable Objects share.

    ``workflows`` and ``plugins`` are as for :class:`~flue_core.Runtime`. ``prefix`` is the path the
    HTTP surface is served under (``""``: the root). Other keyword arguments are options of
    :func:`flue_core.http.create_app` (``authorize_run_read``, ``list_runs_enabled``...): run reads
    stay closed unless granted, as on every target. ``streams=True`` serves general Durable Streams at
    ``<prefix>/streams/<path>`` from the ``StreamObject`` (:mod:`flue_cloudflare.streams`).
    ``execute=False`` keeps runs in their objects
    without executing them there (for tests of the store's rules; see
    :class:`~flue_cloudflare.target.CloudflareTarget`).
    """

    def __init__(
        self,
        workflows: WorkflowSource | Iterable[WorkflowSource] | None = None,
        *,
        plugins: Iterable[object] = (),
        prefix: str = "",
        streams: bool = False,
        execute: bool = True,
        **http_options: Any,
    ) -> None:
        global _current
        if "open_runtime" in http_options:
            raise ConfigurationError("FlueApp opens its runtime itself; leave open_runtime out.")
        if "streams" in http_options:
            raise ConfigurationError("A FlueApp keeps its streams in a Durable Object: pass streams=True.")
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError(f"prefix must start with '/' and not end with one, not {prefix!r}.")
        self.workflows = workflows
        self.plugins = tuple(plugins)
        self.prefix = prefix
        self.streams = streams
        self.execute = execute
        self.http_options = http_options
        self._runtime: Runtime | None = None
        self._http: Starlette | None = None
        self._opening = PollingLock()
        self._synced = False
        _current = self

    # -- the isolate's runtime ----------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise ConfigurationError("The FlueApp is not open yet; handlers open it with `await app.open(env)`.")
        return self._runtime

    @property
    def target(self) -> CloudflareTarget:
        target = self.runtime.target
        assert isinstance(target, CloudflareTarget)
        return target

    async def open(self, env: Any) -> Runtime:
        """The isolate's runtime, built and opened on the first call (with ``env``'s bindings)."""
        if self._runtime is not None:
            return self._runtime
        async with self._opening:
            if self._runtime is None:
                self._runtime = await self._open(env)
        return self._runtime

    async def _open(self, env: Any) -> Runtime:
        runtime = Runtime(self.workflows, plugins=self.plugins, execute=self.execute)
        target = runtime.target
        if not isinstance(target, CloudflareTarget):
            raise ConfigurationError(
                f"A FlueApp runs on the Cloudflare target, but target {target.name!r} was selected;"
                " unset FLUE_TARGET in the Worker."
            )
        target.bind(env)
        # Opened for the isolate's life: a Worker has no shutdown to close it in.
        await runtime.__aenter__()
        app = create_app(runtime, **self.http_options)
        self._http = Starlette(routes=[Mount(self.prefix, app=app)]) if self.prefix else app
        return runtime

    async def ready(self, env: Any) -> Runtime:
        """:meth:`open`, and on the first call in this isolate keep the schedules declared on the
        workflows in step with the code (as every process that executes runs does at start-up). The
        Worker's handlers call this; the objects only :meth:`open` (the schedules object answers the
        sync itself, so it must not wait for it)."""
        runtime = await self.open(env)
        if self.execute and not self._synced:
            self._synced = True
            try:
                await sync_declared_schedules(runtime)
            except Exception:
                self._synced = False
                log.exception("flue: the declared schedules could not be stored; trying again on the next request")
        return runtime

    def notify(self, changed: Iterable[str]) -> None:
        """Tell this isolate's readers (of the runtime's change feed) what changed."""
        if self._runtime is not None:
            self._runtime.changes.notify(changed)

    # -- serving ------------------------------------------------------------------------------------

    async def serve(self, request: Any, env: Any) -> Any:
        """Answer an HTTP request to the Worker: a run's record and stream are read from the run's
        object (where its changes happen, so live reads wake at once); everything else here."""
        await self.ready(env)
        forwarded = getattr(request, "js_object", request)
        run_id = self.run_read(request.url)
        if run_id is not None:
            return await calls.stub(env, calls.RUNS, run_id).fetch(forwarded)
        if self.streams and self._is_stream(request.url):
            return await calls.stub(env, calls.STREAMS, calls.STREAMS_NAME).fetch(forwarded)
        if request.method == "POST" and self._waits_for_result(request.url):
            with waiting_for_results():
                return await self.serve_here(request, env)
        return await self.serve_here(request, env)

    def _waits_for_result(self, url: str) -> bool:
        """``POST <prefix>/workflows/<name>?wait=result``: the caller waits for the run's end."""
        parts = urlsplit(url)
        return parts.path.startswith(self.prefix + "/workflows/") and ("wait", "result") in parse_qsl(parts.query)

    def _is_stream(self, url: str) -> bool:
        path = urlsplit(url).path
        mount = self.prefix + STREAMS_PREFIX
        return path == mount or path.startswith(mount + "/")

    async def serve_here(self, request: Any, env: Any) -> Any:
        """Answer with the HTTP surface in this isolate (a Worker's, or a run object's)."""
        await self.open(env)
        assert self._http is not None
        return await serve_asgi(self._http, request, env)

    def run_read(self, url: str) -> str | None:
        """The run id when ``url`` is ``<prefix>/runs/<run_id>`` (any method and query)."""
        path = urlsplit(url).path
        if not path.startswith(self.prefix + "/runs/"):
            return None
        rest = path[len(self.prefix) + len("/runs/") :]
        return unquote(rest) if rest and "/" not in rest else None

    # -- schedules ----------------------------------------------------------------------------------

    async def tick_schedules(self, env: Any) -> None:
        """Admit the due ticks of every schedule (each tick once, however often this is called)."""
        runtime = await self.ready(env)
        now = utc_now()
        for schedule in await runtime.target.store.list_schedules():
            try:
                await tick(runtime, schedule, now)
            except Exception:
                log.exception("flue: schedule %r could not be ticked", schedule.name)

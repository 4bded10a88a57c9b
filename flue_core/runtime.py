"""The runtime: plugins, workflows and a target, opened for the life of the host application."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import pluggy

from flue_core.changes import Changes
from flue_core.clock import SYSTEM_CLOCK, Clock
from flue_core.discovery import WorkflowRegistry, WorkflowSource, as_workflows
from flue_core.errors import RuntimeNotRunning, SyncCallOnEventLoop
from flue_core.models import RunReceipt, RunRecord
from flue_core.plugins import has_implementations, notify, plugin_manager
from flue_core.public_url import checked_public_url, run_url
from flue_core.target import StoreRegistry, Target, select_target

log = logging.getLogger("flue")


class StepStandIns(Protocol):
    """What ``Runtime.step_doubles`` holds: the function a step calls instead of ``fn`` (or ``fn``)."""

    def stand_in(self, run_id: str, name: str, key: str, fn: Callable[..., Any]) -> Callable[..., Any]: ...


_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar("flue_runtime", default=None)
_open_runtimes: list[Runtime] = []
NOTIFY_GRACE = 5.0


class Runtime:
    """Workflows, plugins and one target. Open it for as long as runs may be started or executed::

        runtime = Runtime(workflows="myapp.workflows")          # FLUE_TARGET / detection / local
        async with runtime:
            receipt = await workflows.start(daily_summary, input={...})

    ``workflows`` is a list of workflows, modules or dotted package names, or ``None`` for the
    ``flue.workflows`` entry-point group. ``target`` is a target name or instance; remaining keyword
    arguments configure the target (the local target takes ``store=``, ``concurrency=``...).
    ``public_url`` is where the runtime's HTTP app is reachable (``"/flue"`` when mounted there, or
    ``"https://api.example.com/flue"``): receipts of ``workflows.start()`` name ``<public_url>/runs/<id>``.
    Without it, the HTTP app teaches the runtime the path it is mounted under on the first request it
    serves; until then receipts name ``/runs/<id>`` (see :mod:`flue_core.public_url`).
    ``clock`` is what decides *when* (sleeps, signal deadlines, back-offs, delayed starts, schedule
    ticks): the wall clock by default, a virtual one in :mod:`flue_core.testkit`.
    """

    def __init__(
        self,
        workflows: WorkflowSource | Iterable[WorkflowSource] | None = None,
        *,
        target: str | Target | None = None,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        public_url: str | None = None,
        clock: Clock | None = None,
        **target_options: Any,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        #: Stand-ins for step functions, by step name: set by :mod:`flue_core.testkit` only.
        self.step_doubles: StepStandIns | None = None
        self.pm: pluggy.PluginManager = plugin_manager(plugins, entry_points=entry_points)
        self.registry = WorkflowRegistry(as_workflows(workflows))
        self.stores = StoreRegistry()
        self.pm.hook.flue_register_stores(register=self.stores)
        self.target: Target = select_target(self.pm, target, target_options)
        self.changes = Changes()
        self._public_url = checked_public_url(public_url)
        self._learned_url: str | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._background: anyio.abc.TaskGroup | None = None
        self._context_token: contextvars.Token[Runtime | None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        self._background = anyio.create_task_group()
        await self._background.__aenter__()
        try:
            await self.target.open(self)
        except BaseException:
            self._background.cancel_scope.cancel()
            await self._background.__aexit__(None, None, None)
            self._background = None
            raise
        self._token = anyio.lowlevel.current_token()
        self._context_token = _current.set(self)
        _open_runtimes.append(self)
        if has_implementations(self.pm.hook.flue_runtime_opened):
            await notify(self.pm.hook.flue_runtime_opened, runtime=self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None and has_implementations(self.pm.hook.flue_runtime_closing):
            await notify(self.pm.hook.flue_runtime_closing, runtime=self)
        if self in _open_runtimes:
            _open_runtimes.remove(self)
        if self._context_token is not None:
            try:
                _current.reset(self._context_token)
            except ValueError:  # exited from another context than entered; nothing to restore
                pass
        self._token = None
        try:
            await self.target.close()
        finally:
            background, self._background = self._background, None
            if background is not None:  # let pending notifications finish, briefly
                background.cancel_scope.deadline = anyio.current_time() + NOTIFY_GRACE
                await background.__aexit__(None, None, None)

    @property
    def running(self) -> bool:
        return self._token is not None

    @contextmanager
    def run_in_thread(self) -> Iterator[Runtime]:
        """Open the runtime on an event loop in a background thread, for hosts without one.

        Inside the ``with`` block, sync code uses ``workflows.start_sync`` and ``runs.*_sync``.
        """
        with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(self):
            yield self

    def call_sync(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``await func(*args, **kwargs)`` on this runtime's event loop from another thread."""
        if self._token is None:
            raise RuntimeNotRunning("The runtime is not open; open it before calling it from a thread.")
        try:
            anyio.lowlevel.current_token()
        except Exception:
            # anyio.from_thread.run passes positional arguments only: its keywords are its own
            return anyio.from_thread.run(partial(func, *args, **kwargs), token=self._token)
        raise SyncCallOnEventLoop("Called a *_sync function on an event loop thread; await the async function instead.")

    # -- helpers for the pipeline -------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        """The base of receipts' ``stream_url``: the ``public_url`` given, else the path the HTTP app
        was first served under, else ``""`` (the root)."""
        return self._public_url if self._public_url is not None else self._learned_url or ""

    def learn_public_url(self, root_path: str) -> None:
        """Called by the HTTP app with the ``root_path`` of each request it serves: the first one
        fixes the base, unless ``public_url`` was given."""
        if self._learned_url is None and self._public_url is None:
            self._learned_url = root_path.rstrip("/")

    def receipt(self, record: RunRecord) -> RunReceipt:
        return self.receipt_for(record.run_id, record.workflow)

    def receipt_for(self, run_id: str, workflow: str) -> RunReceipt:
        return RunReceipt.trusted(
            run_id=run_id,
            workflow=workflow,
            stream_url=run_url(self.public_url, run_id),
            offset="-1",
        )

    def notify_soon(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        """Dispatch a notification hook in the background (used where the caller must not wait)."""
        if self._background is not None:
            self._background.start_soon(lambda: notify(hook, **kwargs))


def current_runtime(runtime: Runtime | None = None) -> Runtime:
    """The given runtime, else the one opened in this context, else the most recently opened one."""
    if runtime is not None:
        if not runtime.running:
            raise RuntimeNotRunning("This runtime is not open: use `async with runtime:` first.")
        return runtime
    found = _current.get()
    if found is not None and found.running:
        return found
    if _open_runtimes:
        return _open_runtimes[-1]
    raise RuntimeNotRunning(
        "No Flue runtime is open. Open one around your application: `async with Runtime(...):`,"
        " or from sync code `with Runtime(...).run_in_thread():`."
    )

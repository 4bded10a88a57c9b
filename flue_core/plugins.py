"""Building the plugin manager and dispatching hooks whose implementations may be ``async``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

import pluggy

from flue_core import defaults, hookspecs
from flue_core.errors import ConfigurationError

log = logging.getLogger("flue")

# Hooks Flue dispatches itself (awaiting each result, or entering each scope); wrappers would not see
# that work, so they are refused.
_DISPATCHED_HOOKS = (
    "flue_check_admission",
    "flue_schedule_run",
    "flue_run_admitted",
    "flue_admission_repeated",
    "flue_run_started",
    "flue_run_waiting",
    "flue_run_finished",
    "flue_event_emitted",
    "flue_runtime_opened",
    "flue_runtime_closing",
    "flue_admission_scope",
    "flue_execution_scope",
    "flue_step_scope",
    "flue_authorize_run_read",
    "flue_authorize_run_list",
    "flue_authorize_run_cancel",
    "flue_authorize_run_rerun",
    "flue_authorize_run_signal",
    "flue_authorize_schedules",
)


def plugin_manager(plugins: Iterable[object] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """Specs, then the built-in defaults, then installed plugins (group ``flue``), then ``plugins``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="flue.defaults")
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    for name in _DISPATCHED_HOOKS:
        for impl in getattr(pm.hook, name).get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                raise ConfigurationError(
                    f"Plugin {impl.plugin_name!r} wraps {name}, which Flue dispatches itself (awaiting"
                    " or entering what each implementation returns); wrappers cannot observe that."
                    " Implement the hook directly."
                )
    return pm


def _implementations(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The hook's implementations, not copied (pluggy's public ``get_hookimpls()`` copies its list on
    every call, and this is asked several times per run): for looking, or iterating without awaiting."""
    try:
        return hook._hookimpls
    except AttributeError:  # a pluggy that keeps them elsewhere
        return hook.get_hookimpls()


def _calls(hook: pluggy.HookCaller, kwargs: dict[str, Any]) -> Iterable[Any]:
    # pluggy's own call order: last in the list runs first. A copy: a plugin may be registered while
    # an implementation is awaited.
    for impl in reversed(hook.get_hookimpls()):
        yield impl.function(*[kwargs[name] for name in impl.argnames])


async def first_answer(hook: pluggy.HookCaller, **kwargs: Any) -> Any:
    """The first non-``None`` result, awaiting each implementation before asking the next."""
    for result in _calls(hook, kwargs):
        if result is not None and inspect.isawaitable(result):
            result = await result
        if result is not None:
            return result
    return None


async def call_each(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Await every implementation in order; the first exception propagates (decisions that may refuse)."""
    for result in _calls(hook, kwargs):
        if result is not None and inspect.isawaitable(result):
            await result


async def notify(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Await every implementation; an exception is logged and the next implementation still runs."""
    for impl in reversed(hook.get_hookimpls()):  # a copy, as in _calls
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("flue: %s implementation of plugin %r failed", hook.name, impl.plugin_name)


def has_implementations(hook: pluggy.HookCaller) -> bool:
    return bool(_implementations(hook))


def scope(hook: pluggy.HookCaller, **kwargs: Any) -> AbstractContextManager[None]:
    """Enter the context managers a scope hook's implementations return, around a ``with`` block.

    A plugin that raises (answering, entering or exiting) is logged and skipped; the block's own
    exception reaches every manager that was entered and then propagates, never swallowed.
    """
    if not has_implementations(hook):
        return _NO_SCOPE
    return _Scope(hook, kwargs)


_NO_SCOPE = nullcontext()


class _Scope:
    __slots__ = ("_entered", "_hook", "_kwargs")

    def __init__(self, hook: pluggy.HookCaller, kwargs: dict[str, Any]) -> None:
        self._hook = hook
        self._kwargs = kwargs
        self._entered: list[tuple[str, AbstractContextManager[object]]] = []

    def __enter__(self) -> None:
        for impl in reversed(_implementations(self._hook)):
            try:
                manager = impl.function(*[self._kwargs[name] for name in impl.argnames])
                if manager is None:
                    continue
                manager.__enter__()
            except Exception:
                log.exception("flue: %s implementation of plugin %r failed", self._hook.name, impl.plugin_name)
                continue
            self._entered.append((impl.plugin_name, manager))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        while self._entered:
            plugin, manager = self._entered.pop()
            try:
                manager.__exit__(kind, error, tb)
            except Exception:
                log.exception("flue: leaving the %s scope of plugin %r failed", self._hook.name, plugin)

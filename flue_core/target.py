"""Targets (where runs execute and what stores them) and how a runtime selects one."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

from flue_core.errors import AmbiguousTarget, ConfigurationError, TargetNotFound

if TYPE_CHECKING:
    from flue_core.definition import Workflow
    from flue_core.models import RunRecord
    from flue_core.runtime import Runtime
    from flue_core.store import Attempt, RunStore

TARGET_ENV = "FLUE_TARGET"


class Target(ABC):
    """Executes admitted runs and owns the store they live in.

    A target's ``store`` must exist from construction (its ``open`` may connect later). ``worker_id`` is
    the owner id written on runs this target will execute itself.
    """

    name: ClassVar[str]
    store: RunStore
    worker_id: str | None
    #: Seconds an executing run waits for an unreachable store to answer again before its execution
    #: is given up as interrupted (it resumes by replay once the store is back); 0: at once.
    store_patience: float = 0.0

    @abstractmethod
    async def open(self, runtime: Runtime) -> None:
        """Open the store (passing ``runtime.changes.notify`` as its change listener, and attaching its
        ``interest`` with ``runtime.changes.attach``), start executing, and recover runs left
        unfinished by processes that died."""

    @abstractmethod
    async def close(self) -> None:
        """Stop gracefully: admit nothing more, let running runs finish within a grace period, hand
        back or end the rest, then close the store. Nothing may stay ``running`` afterwards."""

    @abstractmethod
    def schedule(self, run: RunRecord) -> None:
        """Hand a freshly persisted run to the executor without waiting for it (a ``scheduled`` run,
        or one admitted to the ready pool, only needs the executors told). Raise if impossible."""

    def owner_for(self, workflow: Workflow) -> str | None:
        """The owner admission gives a fresh run of ``workflow``: this target's worker when it executes
        such a run itself at once, else ``None`` — the ready pool, which a workflow with a
        ``concurrency`` or rate limit always goes through so that the limits hold across processes."""
        return None if workflow.limits.limited else self.worker_id

    def claim_at_admission(self, workflow: Workflow) -> AdmissionClaim | None:
        """A slot to execute a fresh run of ``workflow`` at once, its claim made by admission itself
        (:meth:`RunStore.admit_claimed`), or ``None`` (the default): the run is admitted ``queued``
        and handed over by :meth:`schedule`. Admission asks only for a run that starts now and when
        this target alone schedules runs (no other ``flue_schedule_run`` implementation)."""
        return None

    @abstractmethod
    async def cancel(self, run_id: str) -> bool:
        """Interrupt the run if this target is executing it; ``True`` if it was."""


class AdmissionClaim(ABC):
    """A target's slot for a run claimed at admission (:meth:`Target.claim_at_admission`). Admission
    ends it exactly once: :meth:`start` with the claimed attempt, or :meth:`release` when it claimed
    nothing (the key named an existing run, or the store refused the run)."""

    owner: str  # the worker the run is claimed for

    @abstractmethod
    def start(self, attempt: Attempt) -> None:
        """Execute the claimed run without waiting for it. Raise if impossible (the target is closing):
        admission then ends the run as it ends a run that cannot be scheduled."""

    @abstractmethod
    def release(self) -> None:
        """Give the slot back unused."""


TargetFactory = Callable[..., Target]
StoreFactory = Callable[[str], "RunStore"]


class TargetRegistry:
    """Passed to ``flue_register_targets``: ``register(name, factory, fallback=False)``."""

    def __init__(self) -> None:
        self.factories: dict[str, TargetFactory] = {}
        self.fallbacks: list[str] = []

    def __call__(self, name: str, factory: TargetFactory, *, fallback: bool = False) -> None:
        if name in self.factories:
            raise ConfigurationError(f"Two plugins register a target named {name!r}.")
        self.factories[name] = factory
        if fallback:
            self.fallbacks.append(name)


class StoreRegistry:
    """Passed to ``flue_register_stores``: ``register(scheme, factory)``; opens stores by URL."""

    def __init__(self) -> None:
        self.factories: dict[str, StoreFactory] = {}

    def __call__(self, scheme: str, factory: StoreFactory) -> None:
        if scheme in self.factories:
            raise ConfigurationError(f"Two plugins register a store for {scheme}:// URLs.")
        self.factories[scheme] = factory

    def create(self, url: str) -> RunStore:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        factory = self.factories.get(scheme)
        if factory is None:
            known = ", ".join(f"{s}://" for s in sorted(self.factories)) or "none"
            shown = _without_password(url)
            raise ConfigurationError(
                f"No store handles {shown!r}; known schemes: {known} (a store of another scheme comes with the"
                " distribution that registers it: pip install it).",
                details={"url": shown},
            )
        return factory(url)


def _without_password(url: str) -> str:
    """``url`` with a password it may hold replaced by ``***``: the credentials end at the last ``@``
    after the scheme, whatever reserved characters the password holds unencoded."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def select_target(pm: pluggy.PluginManager, choice: str | Target | None, options: dict[str, Any]) -> Target:
    """An explicit choice, else ``FLUE_TARGET``, else detection hooks, else the one fallback target."""
    if isinstance(choice, Target):
        if options:
            raise ConfigurationError(f"Options {sorted(options)} cannot apply to an already built target.")
        return choice
    registry = TargetRegistry()
    pm.hook.flue_register_targets(register=registry)
    name = choice or os.environ.get(TARGET_ENV) or None
    if name is None:
        detected = sorted({answer for answer in pm.hook.flue_detect_target() if answer})
        if len(detected) > 1:
            raise AmbiguousTarget(
                f"Several targets detected this environment: {', '.join(detected)}."
                f" Choose one with target=... or {TARGET_ENV}.",
                details={"candidates": detected},
            )
        if detected:
            name = detected[0]
        elif len(registry.fallbacks) == 1:
            name = registry.fallbacks[0]
        elif registry.fallbacks:
            candidates = sorted(registry.fallbacks)
            raise AmbiguousTarget(
                f"Several fallback targets are installed: {', '.join(candidates)}."
                f" Choose one with target=... or {TARGET_ENV}.",
                details={"candidates": candidates},
            )
        else:
            raise TargetNotFound(
                "No target is installed or detected; install flue_node_like or pass target=...",
                details={"registered": sorted(registry.factories)},
            )
    factory = registry.factories.get(name)
    if factory is None:
        raise TargetNotFound(
            f"Unknown target {name!r}; registered: {', '.join(sorted(registry.factories)) or 'none'}.",
            details={"target": name, "registered": sorted(registry.factories)},
        )
    return factory(**options)

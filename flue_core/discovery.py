"""Finding workflows (explicit lists, packages, entry points) and resolving them by identity or name."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from flue_core.definition import Workflow
from flue_core.errors import ConfigurationError, DuplicateWorkflow, WorkflowNotFound

WORKFLOWS_ENTRY_POINT_GROUP = "flue.workflows"

WorkflowSource = Workflow | ModuleType | str


class WorkflowRegistry:
    """The workflows one runtime serves, unique by name; objects resolve by identity."""

    def __init__(self, workflows: Iterable[Workflow] = ()) -> None:
        self._by_name: dict[str, Workflow] = {}
        for wf in workflows:
            self.add(wf)

    def add(self, wf: Workflow) -> None:
        existing = self._by_name.get(wf.name)
        if existing is wf:
            return
        if existing is not None:
            raise DuplicateWorkflow(
                f"Two different workflows are named {wf.name!r}: {_where(existing)} and {_where(wf)}.",
                details={"workflow": wf.name},
            )
        self._by_name[wf.name] = wf

    def resolve(self, ref: Workflow | str) -> Workflow:
        """The registered workflow for a name, or for the very object registered (not a look-alike)."""
        if isinstance(ref, Workflow):
            found = self._by_name.get(ref.name)
            if found is ref:
                return found
            raise WorkflowNotFound(
                f"Workflow {ref.name!r} ({_where(ref)}) is not registered with this runtime.",
                details={"workflow": ref.name},
            )
        if isinstance(ref, str):
            found = self._by_name.get(ref)
            if found is not None:
                return found
            raise WorkflowNotFound(f"No workflow named {ref!r} is registered.", details={"workflow": ref})
        raise WorkflowNotFound(f"{ref!r} is neither a workflow nor a workflow name.")

    def get(self, name: str) -> Workflow | None:
        return self._by_name.get(name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


def _where(wf: Workflow) -> str:
    return f"{getattr(wf.fn, '__module__', '?')}.{getattr(wf.fn, '__qualname__', '?')}"


def discover(sources: WorkflowSource | Iterable[WorkflowSource]) -> list[Workflow]:
    """Workflows from a workflow, a module or package (object or dotted name, searched recursively
    for module-level workflows), or a list of those."""
    if isinstance(sources, (Workflow, ModuleType, str)):
        sources = [sources]
    found: list[Workflow] = []
    for source in sources:
        if isinstance(source, Workflow):
            found.append(source)
        elif isinstance(source, (ModuleType, str)):
            found.extend(_from_module(source))
        else:
            raise ConfigurationError(f"Cannot find workflows in {source!r}: give workflows, modules or names.")
    return found


def discover_entry_points(group: str = WORKFLOWS_ENTRY_POINT_GROUP) -> list[Workflow]:
    """Workflows published by installed distributions: each entry point names a workflow or a module."""
    found: list[Workflow] = []
    for entry_point in importlib.metadata.entry_points(group=group):
        loaded = entry_point.load()
        if not isinstance(loaded, (Workflow, ModuleType)):
            raise ConfigurationError(
                f"Entry point {entry_point.name!r} in group {group!r} must name a workflow or a module."
            )
        found.extend(discover(loaded))
    return found


def _from_module(module: ModuleType | str) -> list[Workflow]:
    if isinstance(module, str):
        module = importlib.import_module(module)
    modules = [module]
    if hasattr(module, "__path__"):  # a package: every submodule, recursively
        prefix = module.__name__ + "."
        for info in sorted(pkgutil.walk_packages(module.__path__, prefix), key=lambda i: i.name):
            modules.append(importlib.import_module(info.name))
    found: list[Workflow] = []
    seen: set[int] = set()
    for mod in modules:
        for value in vars(mod).values():
            if isinstance(value, Workflow) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found


def as_workflows(value: Any) -> list[Workflow]:
    """Normalise the ``workflows=`` argument of a runtime; ``None`` means the entry-point group."""
    if value is None:
        return discover_entry_points()
    return discover(value)

"""Finding the application's workflows for local commands: ``--app`` / ``FLUE_APP``.

The value is ``module`` or ``module:attribute`` (dotted attributes allowed), imported with the
working directory on ``sys.path``. The object it names is either

* a :class:`~flue_core.Runtime`: used as it is (its plugins, target and store);
* an ASGI app made by :func:`flue_core.http.create_app`: its runtime (``app.state.runtime``), so
  ``flue serve`` and ``flue start`` take the same import string; or
* workflows: a :class:`~flue_core.Workflow`, a list of them, or a module or package (searched
  recursively, like ``Runtime(workflows=...)``); a runtime is built around them on the store given
  by ``--store``, else ``FLUE_STORE``, else the target's default (``sqlite:///.flue/flue.db``).

Every runtime built here is a short-lived tool's: it adopts no other worker's unfinished runs
(``adopt=False``), which it would start and then hand back as interrupted when the command exits.
A ``Runtime`` the application built itself is used as it was built (its own ``adopt`` choice).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from flue_core.discovery import discover
from flue_core.errors import ConfigurationError
from flue_core.runtime import Runtime

APP_ENV = "FLUE_APP"


class AppNotLoaded(ConfigurationError):
    """``--app`` / ``FLUE_APP`` is missing, cannot be imported, or names no workflows."""

    code = "app_not_loaded"


def import_object(spec: str) -> Any:
    """The object ``module[:attribute]`` names, importing from the working directory first."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or (":" in spec and not attribute):
        raise AppNotLoaded(f"{spec!r} is not 'module' or 'module:attribute'.", details={"app": spec})
    importable_from_cwd()
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppNotLoaded(
                f"Cannot import module {module_name!r} (from {spec!r}); run flue where it can be imported.",
                details={"app": spec},
            ) from None
        raise AppNotLoaded(f"Importing {module_name!r} failed: {exc}", details={"app": spec}) from exc
    except Exception as exc:
        raise AppNotLoaded(
            f"Importing {module_name!r} failed: {type(exc).__name__}: {exc}", details={"app": spec}
        ) from exc
    for part in attribute.split(".") if attribute else ():
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppNotLoaded(f"{spec!r}: {module_name!r} has no attribute {attribute!r}.", details={"app": spec}) from None
    return obj


def importable_from_cwd() -> None:
    """Let the application be imported from the working directory, as ``python -m`` would."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def app_runtime(spec: str | None, store: str | None) -> Runtime:
    """The runtime a local ``flue start`` executes runs in (see the module docstring)."""
    spec = spec or os.environ.get(APP_ENV)
    if not spec:
        raise AppNotLoaded(
            f"Starting a run locally needs the application's workflows: pass --app module[:attribute],"
            f" set {APP_ENV}, or pass --url to start it on a server."
        )
    obj = import_object(spec)
    obj = getattr(getattr(obj, "state", None), "runtime", obj)
    if isinstance(obj, Runtime):
        if store is not None:
            raise AppNotLoaded(
                f"{spec!r} is a Runtime, which chose its own store; --store cannot change it"
                " (configure the store where the Runtime is built, or through FLUE_STORE).",
                details={"app": spec},
            )
        return obj
    return _tool_runtime(workflows_of(obj, spec), store)


def workflows_of(obj: Any, spec: str) -> list[Any]:
    """The workflows ``obj`` (imported from ``spec``) holds; none, or not workflows, is an error."""
    try:
        workflows = discover(obj)
    except (ConfigurationError, TypeError) as exc:
        raise AppNotLoaded(
            f"{spec!r} is neither a Runtime nor workflows (a workflow, a list of them, or a module).",
            details={"app": spec},
        ) from exc
    if not workflows:
        raise AppNotLoaded(f"{spec!r} holds no workflows.", details={"app": spec})
    return workflows


def reader_runtime(store: str | None) -> Runtime:
    """A runtime that only reads (``logs``, ``runs``): no workflows, so it executes nothing."""
    return _tool_runtime([], store)


def _tool_runtime(workflows: list[Any], store: str | None) -> Runtime:
    """A runtime of the command's own: on ``store`` if given, adopting no other worker's runs."""
    options: dict[str, Any] = {"adopt": False}
    if store is not None:
        options["store"] = store
    return Runtime(workflows, **options)

"""What an application is to workerd: its entry module, code, packages, objects, triggers, bindings."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flue_cloudflare.devtools.python_version import COMPATIBILITY_DATE
from flue_core.errors import ConfigurationError

#: workerd loads the dev bundle, which is built offline, only under this experimental flag.
DEV_BUNDLE_FLAG = "python_workers_development"
#: Lets another Worker (cron.js, queues.js) call this one's scheduled() and queue() handlers.
EXTRA_HANDLERS_FLAG = "service_binding_extra_handlers"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DurableObjectClass:
    """A Durable Object class exported by the entry module, SQLite-backed, bound as ``binding``."""

    class_name: str
    binding: str


#: The Durable Object classes of the Cloudflare target and their bindings (``flue_cloudflare.calls``):
#: a Flue application's main module exports these classes.
FLUE_OBJECTS = (
    DurableObjectClass("RunObject", "FLUE_RUNS"),
    DurableObjectClass("IndexObject", "FLUE_INDEX"),
    DurableObjectClass("ScheduleObject", "FLUE_SCHEDULES"),
    DurableObjectClass("LimitObject", "FLUE_LIMITS"),
    DurableObjectClass("StreamObject", "FLUE_STREAMS"),
)


@dataclass(frozen=True)
class Queue:
    """A queue served by workerd's own Queues Worker (``/workerd/queues.js``).

    ``binding`` is the producer binding in the application's Worker (``await env.JOBS.send(...)``),
    ``None`` for none; ``consume`` delivers its batches to the application's ``queue()`` handler with
    ``settings`` (production's names: ``maxBatchSize``, ``maxBatchTimeout``, ``maxRetries``,
    ``deadLetterQueue``, ``retryDelay``, ``maxConcurrency``).
    """

    name: str
    binding: str | None = None
    consume: bool = True
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerApp:
    """A Python Worker application as workerd runs it locally.

    ``main`` is the entry module (a Python file) and ``sources`` more modules or packages shipped
    beside it under their own names; ``packages`` are importable packages of this environment shipped
    from their source as ``python_modules/<name>`` (minus ``exclude``, dotted names); ``requirements``
    are fetched from PyPI as wheels for Pyodide (``None``: flue's Worker requirements and the SDK).
    ``crons`` are cron expressions run by workerd's own ``cron.js``; ``vars`` become bindings (a string
    as text, anything else as JSON). ``package_folders`` ships some of ``packages`` from another
    folder than the importable one (a benchmark beside an earlier version of a package).
    """

    name: str
    main: Path
    sources: tuple[Path, ...] = ()
    packages: tuple[str, ...] = ("flue_core", "flue_cloudflare")
    exclude: tuple[str, ...] = ("flue_cloudflare.devtools",)
    requirements: tuple[str, ...] | None = None
    durable_objects: tuple[DurableObjectClass, ...] = ()
    crons: tuple[str, ...] = ()
    queues: tuple[Queue, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    package_folders: Mapping[str, Path] = field(default_factory=dict)
    compatibility_date: str = COMPATIBILITY_DATE
    compatibility_flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.main.is_file() or self.main.suffix != ".py":
            raise ConfigurationError(f"The entry module of Worker {self.name!r} must be a Python file: {self.main}")
        for source in self.sources:
            if not source.exists():
                raise ConfigurationError(f"Source {source} of Worker {self.name!r} does not exist.")
        names = [*(d.binding for d in self.durable_objects), *(q.binding for q in self.queues if q.binding), *self.vars]
        for name in names:
            if not _NAME.fullmatch(name):
                raise ConfigurationError(f"Binding name {name!r} of Worker {self.name!r} is not an identifier.")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigurationError(f"Worker {self.name!r} binds {', '.join(duplicates)} more than once.")
        for value in self.vars.values():
            if not isinstance(value, str):
                json.dumps(value)  # a value JSON cannot hold fails here, not inside workerd

    @classmethod
    def flue(cls, name: str, main: Path, **options: Any) -> WorkerApp:
        """A Flue application (a :class:`flue_cloudflare.FlueApp` in ``main``): the target's Durable
        Object classes bound, plus ``durable_objects`` of its own."""
        own = tuple(options.pop("durable_objects", ()))
        return cls(name=name, main=main, durable_objects=FLUE_OBJECTS + own, **options)

    @property
    def flags(self) -> tuple[str, ...]:
        """The compatibility flags of the application's Worker."""
        wanted = [DEV_BUNDLE_FLAG, EXTRA_HANDLERS_FLAG, *self.compatibility_flags]
        return tuple(dict.fromkeys(wanted))

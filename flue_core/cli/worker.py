"""``flue worker APP``: a process that executes runs and nothing else — no HTTP.

It executes runs of the application's workflows taken from the store's ready pool (runs admitted by
web processes, woken from waits, handed back by stopping workers), ticks schedules, and adopts the
runs of workers that died. The first Ctrl-C or SIGTERM stops it gracefully: it takes no more runs,
lets running ones finish within the grace period, and hands the rest back to the pool, where other
workers resume them. ``--lease`` and ``--sweep-interval`` set how soon other workers take over its
runs if it dies or hangs (see ``docs/inspection.md#recovery``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from flue_core.cli.app import AppNotLoaded, import_object, workflows_of
from flue_core.cli.exits import Exit
from flue_core.cli.view import Output
from flue_core.errors import ConfigurationError
from flue_core.runtime import Runtime

DEFAULT_CONCURRENCY = 16
DEFAULT_GRACE = 10.0


def worker_runtime(spec: str, store: str | None, **settings: float | None) -> Runtime:
    """The runtime a worker executes runs in: ``spec``'s own :class:`Runtime` (its local target's
    ``settings`` — ``concurrency``, ``shutdown_grace``, ``lease``, ``sweep_interval`` — changed where
    given), or one built around ``spec``'s workflows on ``store`` (else ``FLUE_STORE``)."""
    given = {name: value for name, value in settings.items() if value is not None}
    obj = import_object(spec)
    obj = getattr(getattr(obj, "state", None), "runtime", obj)
    if isinstance(obj, Runtime):
        if store is not None:
            raise AppNotLoaded(
                f"{spec!r} is a Runtime, which chose its own store; --store cannot change it"
                " (configure it where the Runtime is built, or pass the module of the workflows instead).",
                details={"app": spec},
            )
        if not getattr(obj.target, "execute", True):
            raise AppNotLoaded(
                f"{spec!r} is a Runtime that executes nothing (execute=False): a worker needs one that does,"
                " or the module of the workflows.",
                details={"app": spec},
            )
        _configure(obj, spec, given)
        return obj
    options: dict[str, Any] = {"concurrency": DEFAULT_CONCURRENCY, "shutdown_grace": DEFAULT_GRACE, **given}
    if store is not None:
        options["store"] = store
    try:
        return Runtime(workflows_of(obj, spec), **options)
    except ConfigurationError as exc:
        raise AppNotLoaded(exc.message, details={"app": spec}) from None


def _configure(runtime: Runtime, spec: str, settings: dict[str, float]) -> None:
    """Apply the command line's settings to a given Runtime's (unopened) target."""
    target = runtime.target
    unknown = [name for name in settings if not hasattr(target, name)]
    if unknown:
        flags = ", ".join("--" + ("grace" if name == "shutdown_grace" else name.replace("_", "-")) for name in unknown)
        raise AppNotLoaded(
            f"{spec!r} is a Runtime whose {type(target).__name__} has no such setting: {flags} cannot apply.",
            details={"app": spec},
        )
    if settings.get("lease", 1) <= 0 or settings.get("sweep_interval", 1) <= 0:
        raise AppNotLoaded("--lease and --sweep-interval must be > 0.", details={"app": spec})
    for name, value in settings.items():
        setattr(target, name, int(value) if name == "concurrency" else value)


async def worker(args: argparse.Namespace, out: Output, interrupts: Any) -> int:
    """Execute runs until stopped; exit 0 when stopped by a signal."""
    runtime = worker_runtime(
        args.app,
        args.store,
        concurrency=args.concurrency,
        shutdown_grace=args.grace,
        lease=args.lease,
        sweep_interval=args.sweep_interval,
    )
    async with runtime:
        target: Any = runtime.target
        names = ", ".join(sorted(runtime.registry.names)) or "no workflows"
        store = getattr(target.store, "url", type(target.store).__name__)
        print(
            f"flue: worker {target.worker_id} executing {names}, {target.concurrency} at a time, on {store};"
            " Ctrl-C or SIGTERM stops it gracefully",
            file=sys.stderr,
        )
        with interrupts.stoppable():
            await anyio.sleep_forever()
        print(f"flue: worker {target.worker_id} stopping: finishing or handing back its runs", file=sys.stderr)
    return Exit.COMPLETED

"""``flue worker APP``: a process that executes runs and nothing else — no HTTP.

It executes runs of the application's workflows taken from the store's ready pool (runs admitted by
web processes, woken from waits, handed back by stopping workers), ticks schedules, and adopts the
runs of workers that died. The first Ctrl-C or SIGTERM stops it gracefully: it takes no more runs,
lets running ones finish within the grace period, and hands the rest back to the pool (or ends
those that may not retry as ``run_interrupted``), where other workers take them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from flue_core.cli.app import AppNotLoaded, import_object, workflows_of
from flue_core.cli.exits import Exit
from flue_core.cli.view import Output
from flue_core.runtime import Runtime

DEFAULT_CONCURRENCY = 16
DEFAULT_GRACE = 10.0


def worker_runtime(spec: str, store: str | None, concurrency: int | None, grace: float | None) -> Runtime:
    """The runtime a worker executes runs in: ``spec``'s own :class:`Runtime` as it was built, or one
    built around ``spec``'s workflows on ``store`` (else ``FLUE_STORE``)."""
    obj = import_object(spec)
    obj = getattr(getattr(obj, "state", None), "runtime", obj)
    if isinstance(obj, Runtime):
        given = [name for name, value in (("--store", store), ("--concurrency", concurrency), ("--grace", grace)) if value is not None]
        if given:
            raise AppNotLoaded(
                f"{spec!r} is a Runtime, which chose its own target; {', '.join(given)} cannot change it"
                " (configure it where the Runtime is built, or pass the module of the workflows instead).",
                details={"app": spec},
            )
        if not getattr(obj.target, "execute", True):
            raise AppNotLoaded(
                f"{spec!r} is a Runtime that executes nothing (execute=False): a worker needs one that does,"
                " or the module of the workflows.",
                details={"app": spec},
            )
        return obj
    options: dict[str, Any] = {
        "concurrency": DEFAULT_CONCURRENCY if concurrency is None else concurrency,
        "shutdown_grace": DEFAULT_GRACE if grace is None else grace,
    }
    if store is not None:
        options["store"] = store
    return Runtime(workflows_of(obj, spec), **options)


async def worker(args: argparse.Namespace, out: Output, interrupts: Any) -> int:
    """Execute runs until stopped; exit 0 when stopped by a signal."""
    runtime = worker_runtime(args.app, args.store, args.concurrency, args.grace)
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

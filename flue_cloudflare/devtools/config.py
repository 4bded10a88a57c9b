"""Render the workerd configuration (Cap'n Proto text) of a laid-out application.

One service runs the application's Worker: its modules embedded from the layout, its Durable Object
classes SQLite-backed on a local disk (each object is ``<storage>/<uniqueKey>/<64-hex id>.sqlite``),
its bindings, and a socket on ``127.0.0.1:<port>``. Cron expressions run through workerd's own
``/workerd/cron.js`` (a ``Schedule`` object whose alarm calls the Worker's ``scheduled()``; with
``TEST_CLOCK``, ``POST /clock?advance=<ms>`` on its socket moves its clock). Queues run through
``/workerd/queues.js`` (messages in ``QueueShard`` objects, batches delivered to ``queue()``); each
queue has a socket of its own that speaks the producer's protocol (``POST /message`` with the body,
``X-Msg-Fmt: text``), so a message can be sent from outside the Worker.

``embed`` paths are resolved against the configuration file's folder, not the file system root, so
they are written relative to where the configuration is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flue_cloudflare.devtools.app import EXTRA_HANDLERS_FLAG
from flue_cloudflare.devtools.vendor import LaidOutApp

CONST = "config"
SERVICE = "app"
CRON_SERVICE = "cron"
QUEUES_SERVICE = "queues"
DISK = "storage"
#: The binding through which cron.js and queues.js call the application's Worker.
APP_BINDING = "APP"


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the sockets: the application's, cron.js's (its ``/clock``) when the
    application has crons, and one of queues.js's per queue (sending to it; ``/clock``)."""

    app: int
    cron: int | None = None
    queues: Mapping[str, int] = field(default_factory=dict)


def render(laid_out: LaidOutApp, *, config_dir: Path, storage: Path, ports: Ports, test_clock: bool = True) -> str:
    """The configuration text for ``laid_out``, to be written into ``config_dir``."""
    app = laid_out.app
    services = [
        f'(name = "{SERVICE}", worker = .appWorker)',
        f'(name = "{DISK}", disk = (path = {_str(storage)}, writable = true))',
    ]
    sockets = [_socket("http", ports.app, SERVICE)]
    consts = [_app_worker(laid_out, config_dir)]
    if app.crons:
        services.append(f'(name = "{CRON_SERVICE}", worker = .cronWorker)')
        consts.append(
            _bundled_worker(
                "cronWorker", "cron.js", "Schedule", "SCHEDULE", ("CRONS", {APP_BINDING: list(app.crons)}),
                f"{app.name}-cron-schedule", app.compatibility_date, test_clock,
            )
        )  # fmt: skip
        if ports.cron is not None:
            sockets.append(_socket("cron", ports.cron, CRON_SERVICE))
    if app.queues:
        services.append(f'(name = "{QUEUES_SERVICE}", worker = .queuesWorker)')
        consumers = {q.name: {"consumer": APP_BINDING, **q.settings} for q in app.queues if q.consume}
        consts.append(
            _bundled_worker(
                "queuesWorker", "queues.js", "QueueShard", "SHARD", ("CONSUMERS", consumers),
                f"{app.name}-queue-shard", app.compatibility_date, test_clock,
            )
        )  # fmt: skip
        for index, (queue, port) in enumerate(ports.queues.items()):
            designator = f'(name = "{QUEUES_SERVICE}", props = (json = {_str(json.dumps({"queue": queue}))}))'
            sockets.append(_socket(f"queue-{index}", port, designator))
    header = (
        '@0xe0a6c1d1f4b2c3a7;\nusing Workerd = import "/workerd/workerd.capnp";\n\n'
        f"const {CONST} :Workerd.Config = (\n  services = [\n    "
        + ",\n    ".join(services)
        + "\n  ],\n  sockets = [\n    "
        + ",\n    ".join(sockets)
        + "\n  ],\n);\n"
    )
    return header + "\n" + "\n".join(consts)


def _app_worker(laid_out: LaidOutApp, config_dir: Path) -> str:
    app = laid_out.app
    modules = [
        f"(name = {_str(m.name)}, {m.kind} = embed {_str(os.path.relpath(m.path, config_dir))})"
        for m in laid_out.modules()
    ]
    bindings = [
        f'(name = "{d.binding}", durableObjectNamespace = (className = "{d.class_name}"))' for d in app.durable_objects
    ]
    for queue in app.queues:
        if queue.binding:
            props = _str(json.dumps({"queue": queue.name}))
            bindings.append(
                f'(name = "{queue.binding}", queue = (name = "{QUEUES_SERVICE}", props = (json = {props})))'
            )
    bindings += [_var(name, value) for name, value in app.vars.items()]
    namespaces = [
        f'(className = "{d.class_name}", uniqueKey = {_str(f"{app.name}-{d.class_name}")}, enableSql = true)'
        for d in app.durable_objects
    ]
    return _worker("appWorker", modules, app.compatibility_date, app.flags, namespaces, bindings)


def _bundled_worker(
    const: str,
    module: str,
    class_name: str,
    binding: str,
    settings: tuple[str, object],
    unique_key: str,
    date: str,
    test_clock: bool,
) -> str:
    """One of workerd's bundled Workers (cron.js, queues.js): its module, its SQLite-backed object
    class bound as ``binding``, its JSON ``settings`` binding, and the application as ``APP``."""
    name, value = settings
    bindings = [
        f'(name = "{binding}", durableObjectNamespace = (className = "{class_name}"))',
        f"(name = {_str(name)}, json = {_str(json.dumps(value))})",
        f'(name = "{APP_BINDING}", service = "{SERVICE}")',
    ]
    if test_clock:
        bindings.append('(name = "TEST_CLOCK", json = "true")')
    namespaces = [f'(className = "{class_name}", uniqueKey = {_str(unique_key)}, enableSql = true)']
    modules = [f'(name = "{module}", bundled = "/workerd/{module}")']
    return _worker(const, modules, date, (EXTRA_HANDLERS_FLAG,), namespaces, bindings)


def _worker(
    const: str, modules: list[str], date: str, flags: tuple[str, ...], namespaces: list[str], bindings: list[str]
) -> str:
    def items(values: list[str]) -> str:
        return "[\n    " + ",\n    ".join(values) + "\n  ]" if values else "[]"

    return (
        f"const {const} :Workerd.Worker = (\n"
        f"  modules = {items(modules)},\n"
        f"  compatibilityDate = {_str(date)},\n"
        f"  compatibilityFlags = [{', '.join(_str(flag) for flag in flags)}],\n"
        f"  durableObjectNamespaces = {items(namespaces)},\n"
        f'  durableObjectStorage = (localDisk = "{DISK}"),\n'
        f"  bindings = {items(bindings)},\n"
        ");\n"
    )


def _socket(name: str, port: int, service: str) -> str:
    designator = service if service.startswith("(") else f'"{service}"'
    return f'(name = "{name}", address = "127.0.0.1:{port}", http = (), service = {designator})'


def _var(name: str, value: object) -> str:
    if isinstance(value, str):
        return f"(name = {_str(name)}, text = {_str(value)})"
    return f"(name = {_str(name)}, json = {_str(json.dumps(value))})"


def _str(value: object) -> str:
    """A Cap'n Proto text literal. JSON's escapes of quotes, backslashes and newlines are also Cap'n
    Proto's; other characters are written as they are (UTF-8), since Cap'n Proto has no ``\\u``."""
    return json.dumps(str(value), ensure_ascii=False)

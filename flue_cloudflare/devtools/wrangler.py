"""The ``wrangler.toml`` of an application, written and read: the same Worker, objects, triggers and
bindings as the local workerd configuration (:mod:`flue_cloudflare.devtools.config`), for deploying
to Cloudflare (:mod:`flue_cloudflare.devtools.deploy`), and the application a ``wrangler.toml``
describes, for serving it locally.

A generated file starts with the command that writes it again, byte for byte, from its folder.

Differences from the local configuration are those of the two runtimes: Cloudflare runs Python
Workers under the ``python_workers`` compatibility flag with its own Pyodide (the local dev bundle's
flag ``python_workers_development`` is not used), calls ``scheduled()`` and ``queue()`` itself (no
``cron.js``, ``queues.js`` or ``service_binding_extra_handlers``), and creates SQLite-backed Durable
Object classes through a migration.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

from flue_cloudflare.devtools.app import FLUE_OBJECTS, DurableObjectClass, Queue, WorkerApp
from flue_cloudflare.devtools.python_version import COMPATIBILITY_DATE
from flue_core.errors import ConfigurationError

#: The compatibility flag of Python Workers on Cloudflare.
PYTHON_WORKERS_FLAG = "python_workers"
#: Queue consumer settings: the names of :class:`~flue_cloudflare.devtools.app.Queue` (production's
#: JSON names, as workerd's queues.js takes them) and of ``wrangler.toml``.
QUEUE_SETTINGS = {
    "maxBatchSize": "max_batch_size",
    "maxBatchTimeout": "max_batch_timeout",
    "maxRetries": "max_retries",
    "deadLetterQueue": "dead_letter_queue",
    "retryDelay": "retry_delay",
    "maxConcurrency": "max_concurrency",
}
_BY_WRANGLER_NAME = {wrangler: ours for ours, wrangler in QUEUE_SETTINGS.items()}
_LOCAL_ONLY_FLAGS = frozenset({"python_workers_development", "service_binding_extra_handlers"})


#: The Python modules wrangler uploads beside the entry module: every file of its folder matching its
#: module rules (``**/*.py`` for Python Workers, and its defaults).
MODULE_SUFFIXES = frozenset({".py", ".txt", ".html", ".sql", ".bin", ".wasm"})


def render_wrangler(app: WorkerApp, *, main: str | None = None, migration: str = "v1") -> str:
    """``wrangler.toml`` for ``app``. ``main`` is the entry module's path relative to the file (default:
    its name); ``migration`` the tag of the migration that creates the Durable Object classes.

    Its first line is the command that writes it again from its folder."""
    main = main or app.main.name
    flags = [PYTHON_WORKERS_FLAG, *(flag for flag in app.flags if flag not in _LOCAL_ONLY_FLAGS)]
    lines = [
        f"# Written by `{shlex.join(wrangler_command(app, main))} > wrangler.toml`",
        "# from this folder. Check the upload: `python -m flue_cloudflare.devtools deploy --dry-run`.",
        f"name = {_text(app.name)}",
        f"main = {_text(main)}",
        f"compatibility_date = {_text(app.compatibility_date)}",
        f"compatibility_flags = {_list(dict.fromkeys(flags))}",
    ]
    for durable in app.durable_objects:
        lines += [
            "",
            "[[durable_objects.bindings]]",
            f"name = {_text(durable.binding)}",
            f"class_name = {_text(durable.class_name)}",
        ]
    if app.durable_objects:
        classes = [durable.class_name for durable in app.durable_objects]
        lines += ["", "[[migrations]]", f"tag = {_text(migration)}", f"new_sqlite_classes = {_list(classes)}"]
    if app.crons:
        lines += ["", "[triggers]", f"crons = {_list(app.crons)}"]
    for queue in app.queues:
        if queue.binding:
            lines += ["", "[[queues.producers]]", f"binding = {_text(queue.binding)}", f"queue = {_text(queue.name)}"]
        if queue.consume:
            lines += ["", "[[queues.consumers]]", f"queue = {_text(queue.name)}"]
            for name, value in queue.settings.items():
                if name not in QUEUE_SETTINGS:
                    raise ConfigurationError(f"Queue {queue.name!r} has a setting wrangler does not know: {name!r}.")
                lines.append(f"{QUEUE_SETTINGS[name]} = {_value(value)}")
    if app.vars:
        lines += ["", "[vars]", *(f"{name} = {_value(value)}" for name, value in app.vars.items())]
    return "\n".join(lines) + "\n"


def _text(value: str) -> str:
    # JSON's string syntax, with every non-ASCII character escaped, is also TOML's basic string syntax.
    return json.dumps(value)


def _list(values: Any) -> str:
    return "[" + ", ".join(_text(value) for value in values) + "]"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table: bound as a JSON object, as locally
        return "{ " + ", ".join(f"{_text(str(key))} = {_value(item)}" for key, item in value.items()) + " }"
    raise ConfigurationError(f"{value!r} cannot be written in wrangler.toml (vars are JSON values).")


def wrangler_command(app: WorkerApp, main: str) -> list[str]:
    """The command line of ``python -m flue_cloudflare.devtools wrangler`` that describes ``app``, its
    entry module at ``main`` (relative to the folder it runs from)."""
    command = ["python", "-m", "flue_cloudflare.devtools", "wrangler", main, "--name", app.name]
    objects = list(app.durable_objects)
    if tuple(objects[: len(FLUE_OBJECTS)]) == FLUE_OBJECTS:
        command.append("--flue")
        objects = objects[len(FLUE_OBJECTS) :]
    for durable in objects:
        command += ["--durable-object", f"{durable.class_name}:{durable.binding}"]
    for flag in app.compatibility_flags:
        if flag not in _LOCAL_ONLY_FLAGS and flag != PYTHON_WORKERS_FLAG:
            command += ["--compatibility-flag", flag]
    for cron in app.crons:
        command += ["--cron", cron]
    for queue in app.queues:
        settings = [f"{QUEUE_SETTINGS[name]}={_option_value(value)}" for name, value in queue.settings.items()]
        head = queue.name + (f":{queue.binding}" if queue.binding else "")
        command += ["--queue", ",".join([head, *settings, *([] if queue.consume else ["consume=false"])])]
    for name, value in app.vars.items():
        command += ["--var", f"{name}={_option_value(value)}"]
    return command


def parse_queue(spec: str) -> Queue:
    """A ``--queue`` option: ``NAME[:BINDING][,SETTING=VALUE...]`` with wrangler's setting names
    (``max_batch_size=10,max_batch_timeout=1``), ``consume=false`` for a queue only produced to."""
    head, *pairs = spec.split(",")
    name, _, binding = head.partition(":")
    settings: dict[str, Any] = {}
    consume = True
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if key == "consume" and text in ("true", "false"):
            consume = text == "true"
        elif key in _BY_WRANGLER_NAME and equals:
            settings[_BY_WRANGLER_NAME[key]] = _parse_value(text)
        else:
            known = ", ".join(sorted(_BY_WRANGLER_NAME))
            raise ConfigurationError(f"Queue {name!r}: {pair!r} is not SETTING=VALUE with a setting among {known}.")
    return Queue(name, binding or None, consume=consume, settings=settings)


def app_from_wrangler(
    path: Path, *, vars: dict[str, Any] | None = None, **options: Any
) -> WorkerApp:
    """The application a ``wrangler.toml`` describes, as workerd serves it locally: its name, entry
    module (with the other modules of its folder, as wrangler uploads them), compatibility date and
    flags, Durable Object classes, cron triggers, queues and vars (``vars`` added on top: a secret
    locally). ``options`` are :class:`WorkerApp`'s (``requirements``, ``packages``)."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"Cannot read the wrangler configuration {path}: {error}") from None
    for key in ("name", "main"):
        if not isinstance(config.get(key), str):
            raise ConfigurationError(f"{path} has no {key!r}: wrangler needs it, and so does the local tooling.")
    main = (path.parent / config["main"]).resolve()
    if not main.is_file():
        raise ConfigurationError(f"The entry module of {path} was not found: {main}")
    sources = tuple(
        entry
        for entry in sorted(main.parent.iterdir())
        if entry != main
        and not entry.name.startswith((".", "__pycache__"))
        and (entry.is_dir() or entry.suffix in MODULE_SUFFIXES)
    )
    flags = [flag for flag in config.get("compatibility_flags", []) if flag != PYTHON_WORKERS_FLAG]
    objects = tuple(
        DurableObjectClass(binding["class_name"], binding["name"])
        for binding in config.get("durable_objects", {}).get("bindings", [])
    )
    queues_config = config.get("queues", {})
    producers = {entry["queue"]: entry["binding"] for entry in queues_config.get("producers", [])}
    consumers = {entry["queue"]: entry for entry in queues_config.get("consumers", [])}
    queues = tuple(
        Queue(
            name,
            producers.get(name),
            consume=name in consumers,
            settings={_BY_WRANGLER_NAME[k]: v for k, v in consumers.get(name, {}).items() if k in _BY_WRANGLER_NAME},
        )
        for name in dict.fromkeys([*producers, *consumers])
    )
    return WorkerApp(
        name=config["name"],
        main=main,
        sources=sources,
        durable_objects=objects,
        crons=tuple(config.get("triggers", {}).get("crons", [])),
        queues=queues,
        vars={**config.get("vars", {}), **(vars or {})},
        compatibility_date=str(config.get("compatibility_date", COMPATIBILITY_DATE)),
        compatibility_flags=tuple(flags),
        **options,
    )


def _option_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_value(text: str) -> Any:
    """A value given on the command line: JSON when it parses, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text

"""``python -m flue_cloudflare.devtools <command>``: the local workerd tooling on the command line.

Commands: ``fetch`` (every pinned ingredient, the dev bundle and flue's Worker wheels), ``bundle``,
``python`` (the Worker's Python, locally and as a ``wrangler.toml`` deploys it), ``vendor`` (lay out
an application), ``config`` (write its workerd configuration), ``serve`` (run it on workerd until
stopped), ``cron`` and ``send`` (fire a served application's cron trigger, send to its queue),
``wrangler`` (write its ``wrangler.toml``), ``deploy`` (check the upload with ``--dry-run``, or
deploy) and ``run-wrangler`` (the pinned wrangler, e.g. ``secret put``). An application is read
from its ``wrangler.toml`` (``--config``, default ``./wrangler.toml``) or given as an entry module
with options. Each command prints where its result is; errors are ``devtools: <code>: <message>``
on stderr with exit status 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from flue_cloudflare.devtools.app import DurableObjectClass, WorkerApp
from flue_cloudflare.devtools.bundle import BUNDLE_FILE
from flue_cloudflare.devtools.cache import Cache
from flue_cloudflare.devtools.deploy import check_python, deploy_folder, run_deploy, run_wrangler
from flue_cloudflare.devtools.errors import ToolingError
from flue_cloudflare.devtools.harness import LocalWorker, fetch_ingredients, fire_crons_soon
from flue_cloudflare.devtools.ingredients import WRANGLER_VERSION, node_packages, wrangler_node
from flue_cloudflare.devtools.process import stop_signals_as_ctrl_c
from flue_cloudflare.devtools.python_version import COMPATIBILITY_DATE, PYODIDE_VERSION, PYTHON_VERSION
from flue_cloudflare.devtools.vendor import lay_out
from flue_cloudflare.devtools.wrangler import app_from_wrangler, parse_queue, render_wrangler
from flue_core.errors import ConfigurationError, FlueError

#: Options that describe an application given by its entry module; a wrangler.toml describes these.
_MAIN_ONLY = ("name", "source", "flue", "durable_object", "cron", "queue", "compatibility_flag")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flue_cloudflare.devtools",
        description="Run Python Workers on a local workerd, offline, and check or deploy them with wrangler.",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="the cache folder (default: $FLUE_CLOUDFLARE_CACHE, else .cloudflare/ of the flue checkout"
        " installed, else ~/.cache/flue-cloudflare)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "fetch", help="fetch npm workerd, pyodide and wrangler, capnp, flue's Worker wheels; build the bundle"
    )
    commands.add_parser("bundle", help="build (or find) the Pyodide dev bundle; print its folder")
    python = commands.add_parser(
        "python", help="the Worker's Python locally, and on Cloudflare with a wrangler.toml"
    )
    python.add_argument("--config", type=Path, help="a wrangler.toml (default: ./wrangler.toml if there is one)")
    for name, text in (
        ("vendor", "lay out an application (entry module, python_modules/); print its folder"),
        ("config", "write an application's workerd configuration into --folder; print the workerd command"),
        ("serve", "serve an application on workerd until stopped (Ctrl-C, SIGTERM, SIGHUP)"),
        ("deploy", "check the upload with wrangler deploy --dry-run (offline), or deploy it"),
    ):
        command = commands.add_parser(name, help=text)
        _app_options(command, main_required=False)
        if name in ("config", "serve"):
            _folder_option(command)
            command.add_argument("--port", type=int, help="the application's port on 127.0.0.1 (default: a free one)")
        if name == "deploy":
            command.add_argument("--dry-run", action="store_true", help="check and measure, upload nothing")
            command.add_argument("--outdir", type=Path, help="with --dry-run: where wrangler writes the upload")
    for name, text in (
        ("cron", "fire the cron trigger of a served application now"),
        ("send", "send a message to a queue of a served application"),
    ):
        command = commands.add_parser(name, help=text)
        if name == "send":
            command.add_argument("queue", help="the queue's name")
            command.add_argument("body", help="the message, as text")
        command.add_argument("--config", type=Path, help="its wrangler.toml (default: ./wrangler.toml)")
        _folder_option(command)
    wrangler = commands.add_parser("wrangler", help="write an application's wrangler.toml")
    _app_options(wrangler, main_required=True)
    wrangler.add_argument(
        "--main-path", help="the entry module's path in wrangler.toml (default: relative to its folder)"
    )
    wrangler.add_argument("--output", type=Path, help="the file to write (default: print it)")
    run = commands.add_parser(
        "run-wrangler", help="run the pinned wrangler in the deploy folder: run-wrangler secret put NAME"
    )
    run.add_argument("--config", type=Path, help="the wrangler.toml (default: ./wrangler.toml)")
    run.add_argument("arguments", nargs=argparse.REMAINDER, help="wrangler's arguments")
    return parser


def _folder_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--folder", type=Path, help="configuration, log and storage (default: local/<name> in the cache)"
    )


def _app_options(command: argparse.ArgumentParser, *, main_required: bool) -> None:
    if main_required:
        command.add_argument("main", type=Path, help="the entry module, a Python file")
    else:
        command.add_argument(
            "main", type=Path, nargs="?", help="the entry module (default: the application of --config)"
        )
        command.add_argument("--config", type=Path, help="the application's wrangler.toml (default: ./wrangler.toml)")
    command.add_argument(
        "--name", help="the application's name (default: the name in ./wrangler.toml or ./pyproject.toml)"
    )
    command.add_argument(
        "--source", type=Path, action="append", default=[], help="a module or package shipped beside it"
    )
    command.add_argument(
        "--package",
        action="append",
        help="an importable package shipped from its source (default: flue_core, flue_cloudflare)",
    )
    command.add_argument(
        "--requirement", action="append", help="a PyPI requirement (default: flue's Worker requirements)"
    )
    command.add_argument(
        "--flue", action="store_true", help="a Flue application: bind the Cloudflare target's Durable Object classes"
    )
    command.add_argument("--durable-object", action="append", default=[], metavar="CLASS:BINDING")
    command.add_argument("--compatibility-flag", action="append", default=[], metavar="FLAG")
    command.add_argument("--cron", action="append", default=[], metavar="EXPRESSION")
    command.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME[:BINDING][,SETTING=VALUE...]",
        help="a queue consumed by queue(), BINDING its producer binding, SETTINGs wrangler's"
        " (max_batch_size=10,max_batch_timeout=1)",
    )
    command.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="a binding; VALUE as JSON if it parses"
    )


def _vars(specs: list[str]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for spec in specs:
        key, _, text = spec.partition("=")
        try:
            variables[key] = json.loads(text)
        except ValueError:
            variables[key] = text
    return variables


def config_path(args: argparse.Namespace) -> Path:
    """The wrangler.toml a command is about: ``--config``, else ``./wrangler.toml``."""
    path = (args.config or Path("wrangler.toml")).resolve()
    if not path.is_file():
        raise ConfigurationError(
            f"No wrangler configuration at {path}: run the command in the application's folder, give"
            " --config PATH, or (except for deploy) give the entry module and its options."
        )
    return path


def app_from(args: argparse.Namespace) -> WorkerApp:
    """The application of a command: its wrangler.toml's, or the entry module's with its options."""
    options: dict[str, Any] = {}
    if args.package:
        options["packages"] = tuple(args.package)
    if args.requirement:
        options["requirements"] = tuple(args.requirement)
    variables = _vars(args.var)
    if getattr(args, "main", None) is None or getattr(args, "config", None) is not None:
        given = [f"--{name.replace('_', '-')}" for name in _MAIN_ONLY if getattr(args, name, None)]
        if given:
            raise ConfigurationError(
                f"{', '.join(given)} describe an entry module's application; the wrangler.toml describes this one."
            )
        return app_from_wrangler(config_path(args), vars=variables, **options)
    objects = []
    for spec in args.durable_object:
        class_name, _, binding = spec.partition(":")
        objects.append(DurableObjectClass(class_name, binding or class_name.upper()))
    make = WorkerApp.flue if args.flue else WorkerApp
    return make(
        name=args.name or _default_name(),
        main=args.main.resolve(),
        sources=tuple(path.resolve() for path in args.source),
        durable_objects=tuple(objects),
        crons=tuple(args.cron),
        queues=tuple(parse_queue(spec) for spec in args.queue),
        vars=variables,
        compatibility_flags=tuple(args.compatibility_flag),
        **options,
    )


def _default_name() -> str:
    """The ``name`` of ``./wrangler.toml``, else the ``[project] name`` of ``./pyproject.toml``."""
    for file, keys in (("wrangler.toml", ("name",)), ("pyproject.toml", ("project", "name"))):
        try:
            value: Any = tomllib.loads(Path(file).read_text())
            for key in keys:
                value = value[key]
        except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
            continue
        if isinstance(value, str):
            return value
    raise ConfigurationError("Name the application with --name (there is no wrangler.toml or pyproject.toml here).")


def _folder(args: argparse.Namespace, cache: Cache, name: str) -> Path:
    return (args.folder or cache.root / "local" / name).resolve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cache = Cache(args.cache.resolve()) if args.cache else Cache.default()
    try:
        return _run(args, cache)
    except FlueError as error:
        print(f"devtools: {error.code}: {error.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, cache: Cache) -> int:
    if args.command == "fetch":
        began = time.monotonic()
        ingredients = fetch_ingredients(cache)
        print(f"workerd: {ingredients.packages.workerd}")
        print(f"bundle: {ingredients.bundle_dir / BUNDLE_FILE}")
        print(f"wrangler: {ingredients.packages.wrangler} (node {wrangler_node(cache)})")
        print(f"cache: {cache.root} ({time.monotonic() - began:.1f} s)")
    elif args.command == "bundle":
        print(fetch_ingredients(cache, wheels=False).bundle_dir)
    elif args.command == "python":
        print(f"local: Python {PYTHON_VERSION} (Pyodide {PYODIDE_VERSION}, compatibility_date {COMPATIBILITY_DATE})")
        if args.config is not None or Path("wrangler.toml").is_file():
            path = config_path(args)
            app = app_from_wrangler(path)
            print(f"{path}: Pyodide {check_python(cache, app)} on Cloudflare (compatibility_date {app.compatibility_date})")
    elif args.command == "vendor":
        print(lay_out(cache, app_from(args)).folder)
    elif args.command == "wrangler":
        app = app_from(args)
        base = (args.output.resolve().parent if args.output else Path.cwd())
        main_path = args.main_path or Path(os.path.relpath(app.main, base)).as_posix()
        text = render_wrangler(app, main=main_path)
        if args.output is None:
            print(text, end="")
        else:
            args.output.write_text(text)
            print(args.output)
    elif args.command == "deploy":
        _deploy(args, cache)
    elif args.command == "run-wrangler":
        path = config_path(args)
        folder = deploy_folder(cache, path, app_from_wrangler(path))
        arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
        return run_wrangler(cache, folder, arguments).returncode
    elif args.command in ("cron", "send"):
        _trigger(args, cache)
    else:
        app = app_from(args)
        worker = LocalWorker(app, _folder(args, cache, app.name), cache=cache, port=args.port)
        if args.command == "config":
            worker.prepare()
            print(" ".join(worker.workerd.command))
        else:
            _serve(worker)
    return 0


def _deploy(args: argparse.Namespace, cache: Cache) -> None:
    if args.main is not None:
        raise ConfigurationError(
            "deploy reads the application from its wrangler.toml (--config), not an entry module."
        )
    path = config_path(args)
    app = app_from(args)
    node_packages(cache)
    deployment = run_deploy(cache, path, app, dry_run=args.dry_run, outdir=args.outdir)
    if not args.dry_run:
        print(deployment.output)
    print(f"wrangler {WRANGLER_VERSION}: {app.name} on Pyodide {deployment.pyodide} (Python {PYTHON_VERSION})")
    print(deployment.size.report())
    if deployment.outdir is not None:
        print(f"dry run: nothing uploaded; the upload is in {deployment.outdir}")
    print(f"project folder: {deployment.folder}")


def _trigger(args: argparse.Namespace, cache: Cache) -> None:
    app = app_from_wrangler(config_path(args)) if args.folder is None else None
    folder = _folder(args, cache, app.name if app else "")
    try:
        state = json.loads((folder / "serving.json").read_text())
    except (OSError, ValueError):
        raise ToolingError(f"Nothing is served from {folder}: start it with `serve` first.") from None
    if args.command == "cron":
        if not state.get("cron_url"):
            raise ToolingError(f"{state['app']} has no cron triggers.")
        occurrence = fire_crons_soon(state["cron_url"], state["crons"])
        print(f"scheduled() runs now with scheduledTime {occurrence}")
    else:
        url = state["queues"].get(args.queue)
        if url is None:
            raise ToolingError(f"{state['app']} has no queue {args.queue!r} (it has {sorted(state['queues'])}).")
        response = httpx.post(f"{url}/message", content=args.body.encode(), headers={"X-Msg-Fmt": "text"}, timeout=30)
        if response.status_code >= 300:
            raise ToolingError(f"queues.js refused the message: {response.status_code} {response.text}")
        print(f"sent to {args.queue}")


def _serve(worker: LocalWorker) -> None:
    with stop_signals_as_ctrl_c():
        try:
            worker.start()
            started = f"started in {worker.workerd.started_in:.1f} s; log {worker.workerd.log}"
            print(f"serving {worker.app.name} at {worker.url} ({started})", flush=True)
            print(f"storage: {worker.storage}", flush=True)
            if worker.app.crons:
                print("fire the cron trigger: python -m flue_cloudflare.devtools cron", flush=True)
            for queue in worker.app.queues:
                print(f"send to {queue.name}: python -m flue_cloudflare.devtools send {queue.name} TEXT", flush=True)
            while worker.workerd.running:
                time.sleep(0.5)
            print(f"workerd exited{worker.workerd.tail()}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()


if __name__ == "__main__":
    sys.exit(main())

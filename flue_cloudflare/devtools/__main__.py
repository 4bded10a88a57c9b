"""``python -m flue_cloudflare.devtools <command>``: the local workerd tooling on the command line.

Commands: ``fetch`` (every pinned ingredient, the dev bundle and flue's Worker wheels), ``bundle``,
``vendor`` (lay out an application), ``config`` (write its workerd configuration), ``serve`` (run
it on workerd until interrupted) and ``wrangler`` (its ``wrangler.toml``, to deploy it). Each prints
where its result is; errors are ``devtools: <code>: <message>`` on stderr with exit status 1 (2 for a
usage error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flue_cloudflare.devtools.app import DurableObjectClass, Queue, WorkerApp
from flue_cloudflare.devtools.bundle import BUNDLE_FILE
from flue_cloudflare.devtools.cache import Cache
from flue_cloudflare.devtools.harness import LocalWorker, fetch_ingredients
from flue_cloudflare.devtools.vendor import lay_out
from flue_cloudflare.devtools.wrangler import render_wrangler
from flue_core.errors import FlueError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flue_cloudflare.devtools",
        description="Run Python Workers on a local workerd, offline: fetch the pinned ingredients, build"
        " the Pyodide dev bundle, vendor an application's packages, write its workerd configuration, serve it.",
    )
    parser.add_argument("--cache", type=Path, help="the cache folder (default: $FLUE_CLOUDFLARE_CACHE or .cloudflare/)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("fetch", help="fetch npm workerd and pyodide, capnp, flue's Worker wheels; build the bundle")
    commands.add_parser("bundle", help="build (or find) the Pyodide dev bundle; print its folder")
    for name, text in (
        ("vendor", "lay out an application (entry module, python_modules/); print its folder"),
        ("config", "write an application's workerd configuration into --folder; print the workerd command"),
        ("serve", "serve an application on workerd until interrupted"),
        ("wrangler", "write an application's wrangler.toml, to deploy it with pywrangler"),
    ):
        command = commands.add_parser(name, help=text)
        _app_options(command)
        if name == "wrangler":
            command.add_argument(
                "--main-path", help="the entry module's path in the deployed project (default: its name)"
            )
            command.add_argument("--output", type=Path, help="the file to write (default: print it)")
        elif name != "vendor":
            command.add_argument(
                "--folder", type=Path, default=Path(".cloudflare/local"), help="configuration, log and storage"
            )
            command.add_argument("--port", type=int, help="the application's port on 127.0.0.1 (default: a free one)")
    return parser


def _app_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("main", type=Path, help="the entry module, a Python file")
    command.add_argument("--name", help="the application's name (default: the entry module's folder name)")
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
    command.add_argument("--cron", action="append", default=[], metavar="EXPRESSION")
    command.add_argument(
        "--queue", action="append", default=[], metavar="NAME[:BINDING]", help="a queue consumed by queue()"
    )
    command.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="a binding; VALUE as JSON if it parses"
    )


def app_from(args: argparse.Namespace) -> WorkerApp:
    objects = []
    for spec in args.durable_object:
        class_name, _, binding = spec.partition(":")
        objects.append(DurableObjectClass(class_name, binding or class_name.upper()))
    queues = []
    for spec in args.queue:
        name, _, binding = spec.partition(":")
        queues.append(Queue(name, binding or None))
    variables: dict[str, object] = {}
    for spec in args.var:
        key, _, text = spec.partition("=")
        try:
            variables[key] = json.loads(text)
        except ValueError:
            variables[key] = text
    main = args.main.resolve()
    make = WorkerApp.flue if args.flue else WorkerApp
    return make(
        name=args.name or main.parent.name,
        main=main,
        sources=tuple(path.resolve() for path in args.source),
        packages=tuple(args.package) if args.package else WorkerApp.packages,
        requirements=tuple(args.requirement) if args.requirement else None,
        durable_objects=tuple(objects),
        crons=tuple(args.cron),
        queues=tuple(queues),
        vars=variables,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cache = Cache(args.cache.resolve()) if args.cache else Cache.default()
    try:
        if args.command == "fetch":
            began = time.monotonic()
            ingredients = fetch_ingredients(cache)
            print(f"workerd: {ingredients.packages.workerd}")
            print(f"bundle: {ingredients.bundle_dir / BUNDLE_FILE}")
            print(f"cache: {cache.root} ({time.monotonic() - began:.1f} s)")
        elif args.command == "bundle":
            print(fetch_ingredients(cache, wheels=False).bundle_dir)
        elif args.command == "vendor":
            print(lay_out(cache, app_from(args)).folder)
        elif args.command == "wrangler":
            text = render_wrangler(app_from(args), main=args.main_path)
            if args.output is None:
                print(text, end="")
            else:
                args.output.write_text(text)
                print(args.output)
        else:
            worker = LocalWorker(app_from(args), args.folder.resolve(), cache=cache, port=args.port)
            worker.prepare()
            if args.command == "config":
                print(" ".join(worker.workerd.command))
            else:
                _serve(worker)
    except FlueError as error:
        print(f"devtools: {error.code}: {error.message}", file=sys.stderr)
        return 1
    return 0


def _serve(worker: LocalWorker) -> None:
    worker.start()
    started = f"started in {worker.workerd.started_in:.1f} s; log {worker.workerd.log}"
    print(f"serving {worker.app.name} at {worker.url} ({started})")
    if worker.app.crons:
        print(f"cron.js clock: POST {worker.cron_url}/clock?advance=<ms>")
    try:
        while worker.workerd.running:
            time.sleep(0.5)
        print(f"workerd exited{worker.workerd.tail()}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())

"""The ``flue`` command line: sub-commands, options, and checking what argparse cannot."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from datetime import timedelta
from collections.abc import Sequence
from typing import Any, NoReturn

from flue_core import arguments
from flue_core.cli.app import APP_ENV
from flue_core.cli.backends import URL_ENV
from flue_core.cli.exits import UsageError
from flue_core.cli.replay import add_replay_parser, check_run_selection
from flue_core.errors import FlueError
from flue_core.models import RunStatus
from flue_core.limits import MAX_DEPTH
from flue_core.snapshot import NotJSON, loads

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3583
#: ``flue dashboard``'s port: beside ``flue serve``'s, so both can run at once.
DEFAULT_DASHBOARD_PORT = 3584
#: Headers the client sets itself; a user value would break the protocol exchange.
RESERVED_HEADERS = frozenset({"accept", "content-type", "content-length", "host", "idempotency-key"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Parser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting with argparse's status 2 (a cancelled run's)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> Parser:
    parser = Parser(
        prog="flue",
        description="Serve a Flue application, start workflow runs, follow their events, list, cancel and re-run runs, open a dashboard.",
        epilog="Exit codes: 0 completed, 1 failed, 2 cancelled, 64 usage, 65 rejected, 66 not found,"
        " 69 unavailable, 70 internal error, 78 configuration, 130/143 interrupted by SIGINT/SIGTERM"
        " (serve, dashboard and worker exit 0 when stopped). See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve an ASGI application with uvicorn")
    serve.add_argument("app", metavar="APP", help="import string of the ASGI app, module:attribute")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default {DEFAULT_PORT})")
    serve.add_argument("--reload", action="store_true", help="restart when source files change (development)")
    serve.add_argument("--factory", action="store_true", help="APP is a function returning the app")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug", "trace"])

    start = commands.add_parser("start", help="start a workflow run (executed here, or on a server with --url)")
    start.add_argument("workflow", metavar="WORKFLOW", help="the workflow's registered name")
    start.add_argument("--input", metavar="JSON", help="the input as JSON, @FILE to read it from a file, - for stdin")
    start.add_argument("--key", help="idempotency key: the same key returns the same run")
    start.add_argument("-f", "--follow", action="store_true", help="print the run's events until it ends")
    start.add_argument("--detach", action="store_true", help="with --url: return once admitted, do not wait")
    start.add_argument("--delay", metavar="SECONDS", help="start it this many seconds from now (status scheduled until then)")
    start.add_argument("--at", metavar="TIME", help="start it at this time, with its offset (2026-12-24T09:00:00Z)")
    start.add_argument(
        "--priority", type=int, metavar="N", help="-100 to 100 (default: the workflow's): higher starts first when runs wait for a slot"
    )
    _output(start)
    _where(start, app=True)

    logs = commands.add_parser("logs", help="print a run's events")
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new events until the run ends")
    logs.add_argument("--offset", default="-1", help="print events after this offset (-1: all, now: only new ones)")
    _output(logs)
    _where(logs, app=False)

    cancel = commands.add_parser("cancel", help="cancel a run (wherever it executes)")
    cancel.add_argument("run_id", metavar="RUN_ID")
    _output(cancel)
    _where(cancel, app=False)

    rerun = commands.add_parser("rerun", help="re-run a finished run: a new run with its input, its stored steps taken over")
    rerun.add_argument("run_id", metavar="RUN_ID")
    rerun.add_argument("--from-step", metavar="NAME", help="run this step and the ones after it again (default: only what never ran)")
    rerun.add_argument("--key", help="idempotency key: re-running again with it returns the same new run")
    rerun.add_argument("-f", "--follow", action="store_true", help="print the new run's events until it ends")
    _output(rerun)
    _where(rerun, app=True)

    listing = commands.add_parser(
        "runs", help="list runs, newest first; `flue runs prune` deletes old ones, `flue runs export` writes histories"
    )
    listing.add_argument(
        "action",
        nargs="?",
        choices=["prune", "export"],
        help="prune: delete runs that ended before --older-than; export: write run histories (JSON lines) for flue replay --from",
    )
    listing.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="with export: only these runs (default: every run)")
    listing.add_argument("--unfinished", action="store_true", help="with export: only the runs that have not ended")
    listing.add_argument("-o", "--output", metavar="FILE", help="with export: the file to write (default: standard output)")
    listing.add_argument("--older-than", metavar="AGE", help="with prune: an age such as 30d, 12h, 45m or 90s")
    listing.add_argument("--parent", metavar="RUN_ID", help="only the child runs of this run")
    listing.add_argument("--rerun-of", metavar="RUN_ID", help="only the re-runs of this run")
    listing.add_argument("--workflow", help="only runs of this workflow")
    listing.add_argument("--status", choices=[s.value for s in RunStatus], help="only runs with this status")
    listing.add_argument("--limit", type=int, default=20, help="runs per page, 1-1000 (default 20)")
    listing.add_argument("--cursor", help="the cursor a previous page printed, for the next page")
    _output(listing)
    _where(listing, app=True)  # with --app, a queued run says what it waits for

    add_replay_parser(commands, _output)

    signal = commands.add_parser("signal", help="send a signal into a run (see ctx.wait_for_signal)")
    signal.add_argument("run_id", metavar="RUN_ID")
    signal.add_argument("name", metavar="NAME", help="the signal's name")
    signal.add_argument("--data", metavar="JSON", help="its data as JSON, @FILE to read it from a file, - for stdin")
    signal.add_argument("--key", help="idempotency key: sending again with it delivers the signal once")
    _output(signal)
    _where(signal, app=True)

    managing = commands.add_parser("schedules", help="list and manage cron schedules")
    actions = managing.add_subparsers(dest="schedule_command", metavar="ACTION")
    listed = actions.add_parser("list", help="list the schedules (the default)")
    create = actions.add_parser("create", help="create a schedule")
    create.add_argument("name", metavar="NAME")
    create.add_argument("workflow", metavar="WORKFLOW")
    create.add_argument("cron", metavar="CRON", help="five fields, such as '0 2 * * *'")
    create.add_argument("--input", metavar="JSON", help="each run's input as JSON, @FILE, or - for stdin")
    create.add_argument("--timezone", default="UTC", help="an IANA time zone (default UTC)")
    create.add_argument("--catchup", type=int, default=1, help="missed ticks to run after downtime (default 1)")
    create.add_argument("--paused", action="store_true", help="create it paused")
    helps = {"show": "a schedule, its next ticks and the runs it started"}
    named = [actions.add_parser(action, help=helps.get(action, f"{action} a schedule")) for action in SCHEDULE_ACTIONS[2:]]
    show = named[0]
    show.add_argument("--ticks", type=int, default=5, help="how many next ticks to show, 0-100 (default 5)")
    show.add_argument("--runs", type=int, default=5, help="how many of its last runs to show, 0-100 (default 5)")
    for action in (listed, create, *named):
        if action is not listed and action is not create:
            action.add_argument("name", metavar="NAME")
        _output(action)
        _where(action, app=True)

    worker = commands.add_parser("worker", help="execute runs (from the store's ready pool) until stopped; no HTTP")
    worker.add_argument("app", metavar="APP", help="module[:attribute]: the workflows, or a Runtime that executes them")
    worker.add_argument("--concurrency", type=_positive, help="runs executed at a time (default 16)")
    worker.add_argument("--grace", type=_seconds, help="seconds running runs get to finish when stopped (default 10)")
    worker.add_argument(
        "--lease", type=_seconds, help="seconds without a heartbeat after which other workers take over its runs (default 30)"
    )
    worker.add_argument(
        "--sweep-interval", type=_seconds, help="seconds between heartbeats and recovery sweeps (default 2)"
    )
    worker.add_argument("--store", help="store URL (default $FLUE_STORE, else sqlite:///.flue/flue.db)")
    worker.set_defaults(format=None)

    dashboard = commands.add_parser("dashboard", help="serve a web dashboard of the runs, reached by a secret link")
    dashboard.add_argument(
        "app",
        nargs="?",
        metavar="APP",
        help=f"module[:attribute]: a Runtime, an app made by create_app, or workflows (default ${APP_ENV};"
        " without one, the runs of the store)",
    )
    dashboard.add_argument("--store", help="local store URL (default $FLUE_STORE, else sqlite:///.flue/flue.db)")
    dashboard.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    dashboard.add_argument(
        "--port", type=int, default=DEFAULT_DASHBOARD_PORT, help=f"port to bind (default {DEFAULT_DASHBOARD_PORT})"
    )
    dashboard.add_argument("--open", action="store_true", help="open the link in the default web browser")
    dashboard.set_defaults(format=None)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, not {text!r}")
    return value


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["text", "ndjson"],
        help="text (default on a terminal) or ndjson (default when piped)",
    )


def _where(parser: argparse.ArgumentParser, *, app: bool) -> None:
    group = parser.add_argument_group("where runs are")
    group.add_argument("--url", default=None, help=f"a Flue server's base URL (default ${URL_ENV}); else the local store")
    group.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header for the server, repeatable",
    )
    group.add_argument("--live", choices=["long-poll", "sse"], default="long-poll", help="how to follow a server's stream")
    group.add_argument("--store", help="local store URL (default $FLUE_STORE, else sqlite:///.flue/flue.db)")
    if app:
        group.add_argument("--app", help=f"local: module[:attribute] holding a Runtime or workflows (default ${APP_ENV})")


SCHEDULE_ACTIONS = ("list", "create", "show", "pause", "resume", "delete")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["schedules"] and (len(argv) == 1 or argv[1] not in (*SCHEDULE_ACTIONS, "-h", "--help")):
        argv.insert(1, "list")  # `flue schedules [options]` lists: the action is optional
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        if ":" not in args.app:
            raise UsageError(f"APP must be an import string module:attribute, not {args.app!r}.")
        return args
    if args.command in ("dashboard", "worker"):
        return args
    if args.command == "replay":
        check_run_selection(args)
        return args
    args.headers = parse_headers(args.header)
    if args.url is None:
        args.url = os.environ.get(URL_ENV) or None
    if args.command == "start":
        args.input = read_input(args.input)
        if args.detach and not args.url:
            raise UsageError(
                "--detach needs --url: a local start executes the run in this process, which waits for it."
            )
        if args.detach and args.follow:
            raise UsageError("--detach and --follow exclude each other.")
        args.delay = None if args.delay is None else _usage(arguments.seconds_text, "--delay", args.delay)
        args.at = None if args.at is None else _usage(arguments.timestamp_text, "--at", args.at)
    if args.command == "signal":
        args.data = read_input(args.data, "--data")
    if args.command == "schedules":
        if args.schedule_command == "create":
            args.input = read_input(args.input)
    if args.command == "runs":
        if args.action != "export" and (args.run_ids or args.unfinished or args.output):
            raise UsageError("RUN_ID, --unfinished and --output only go with `flue runs export`.")
        if args.action == "export":
            check_run_selection(args)
        if args.action == "prune":
            if args.older_than is None:
                raise UsageError("flue runs prune needs --older-than AGE (30d, 12h, 45m, 90s).")
            if args.url:
                raise UsageError("flue runs prune works on the local store only; run it where the store is.")
            args.older_than = age(args.older_than)
        elif args.older_than is not None:
            raise UsageError("--older-than only goes with `flue runs prune`.")
    return args


_AGE = re.compile(r"([0-9]{1,9})([dhms])")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_MAX_AGE_SECONDS = 1000 * 366 * 86400  # keeps now minus the age a valid date


def age(text: str) -> timedelta:
    """``30d``, ``12h``, ``45m`` or ``90s`` as a duration (``--older-than``)."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise UsageError(f"--older-than takes an age such as 30d, 12h, 45m or 90s, not {text!r}.")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if seconds > _MAX_AGE_SECONDS:
        raise UsageError(f"--older-than {text} goes back further than 1000 years; no run is that old.")
    return timedelta(seconds=seconds)


def _usage(parse: Any, option: str, text: str) -> Any:
    try:
        return parse(option, text)
    except FlueError as exc:
        raise UsageError(exc.message) from None


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``'Name: value'`` strings to a dict; malformed, duplicate and reserved names are usage errors."""
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for value in values:
        name, sep, content = value.partition(":")
        name = name.strip()
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise UsageError(f"--header {value!r} is not 'Name: value'.")
        lowered = name.lower()
        if lowered in seen:
            raise UsageError(f"--header {name!r} is given twice.")
        if lowered in RESERVED_HEADERS:
            raise UsageError(f"--header {name!r} is set by flue itself and cannot be overridden.")
        seen.add(lowered)
        headers[name] = content.strip()
    return headers


def read_input(value: str | None, option: str = "--input") -> Any:
    """The ``--input`` (or ``--data``) value: JSON text, ``@path`` of a JSON file, or ``-`` for standard input."""
    if value is None:
        return None
    source = option
    if value == "-":
        text, source = sys.stdin.read(), "standard input"
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise UsageError(f"{option} {value}: cannot read the file ({exc.strerror}).") from None
        source = value[1:]
    else:
        text = value
    try:
        return loads(text)
    except NotJSON:
        raise UsageError(f"The input from {source} is nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:
        raise UsageError(f"The input from {source} is not valid JSON: {exc}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flue")
    except PackageNotFoundError:
        return "unknown"

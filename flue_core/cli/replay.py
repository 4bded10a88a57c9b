"""``flue replay`` (does the new code still replay the stored runs?) and ``flue runs export`` (their
histories to a file, for a check elsewhere). Both read the store without writing to it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from flue_core.cli.app import APP_ENV, AppNotLoaded, import_object, workflows_of
from flue_core.cli.exits import Exit, UsageError
from flue_core.cli.view import Output
from flue_core.replay import check, export
from flue_core.runtime import Runtime

if TYPE_CHECKING:
    from flue_core.cli.commands import Interrupts

#: The local target's store when none is named, as every command's help says.
LOCAL_STORE = "sqlite:///.flue/flue.db"
STORE_ENV = "FLUE_STORE"


def store_of(args: argparse.Namespace) -> str:
    return args.store or os.environ.get(STORE_ENV) or LOCAL_STORE


def new_code(spec: str | None) -> Any:
    """The workflows (or the Runtime, never opened) of ``--app`` / ``FLUE_APP``."""
    spec = spec or os.environ.get(APP_ENV)
    if not spec:
        raise AppNotLoaded(f"flue replay needs the new code: pass --app module[:attribute] or set {APP_ENV}.")
    obj = import_object(spec)
    obj = getattr(getattr(obj, "state", None), "runtime", obj)
    return obj if isinstance(obj, Runtime) else workflows_of(obj, spec)


async def replay(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Replay the stored runs against ``--app``; exit 1 when any diverges."""
    app = new_code(args.app)
    source: dict[str, Any] = {"from_file": args.from_file} if args.from_file else {"store": store_of(args)}
    with interrupts.stoppable():
        report = await check(
            app, run_ids=args.run_ids or None, unfinished=args.unfinished, workflow_names=args.workflow or None, **source
        )
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if out.ndjson:
        for run in report.runs:
            out.line(_json(run.to_dict()))
        print(f"flue: {report.summary()}", file=sys.stderr)
    else:
        for line in report.lines():
            out.line(line)
    return Exit.COMPLETED if report.ok else Exit.FAILED


async def export_histories(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Write the histories of the store's runs to ``--output`` (default: standard output)."""
    if args.url:
        raise UsageError("flue runs export reads a store directly; it cannot be combined with --url.")
    to = args.output or "-"
    with interrupts.stoppable():
        count = await export(
            to,
            store=store_of(args),
            run_ids=args.run_ids or None,
            unfinished=args.unfinished,
            workflow_names=None if args.workflow is None else [args.workflow],
        )
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    where = "standard output" if to == "-" else to
    print(f"flue: exported {count} run histor{'y' if count == 1 else 'ies'} to {where}", file=sys.stderr)
    return Exit.COMPLETED


def add_replay_parser(commands: Any, output: Any) -> None:
    """``flue replay``'s options (``output`` adds ``--format``)."""
    parser = commands.add_parser(
        "replay", help="check that new code still replays stored runs (nothing is executed or written)"
    )
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="only these runs (default: every run)")
    parser.add_argument("--app", help=f"module[:attribute]: the new code's workflows or Runtime (default ${APP_ENV})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--store", help=f"the store to read, never written (default ${STORE_ENV}, else {LOCAL_STORE})"
    )
    source.add_argument("--from", dest="from_file", metavar="FILE", help="a file of histories `flue runs export` wrote")
    parser.add_argument("--unfinished", action="store_true", help="only the runs that have not ended")
    parser.add_argument(
        "--workflow", action="append", metavar="NAME", help="only runs of this workflow (repeatable; a store several apps share)"
    )
    output(parser)


def check_run_selection(args: argparse.Namespace) -> None:
    if args.run_ids and args.unfinished:
        raise UsageError("Name runs or pass --unfinished, not both.")


def _json(value: dict[str, Any]) -> str:
    from flue_core.snapshot import dumps

    return dumps(value)

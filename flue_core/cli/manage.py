"""The sub-commands that change runs and schedules from outside: ``signal``, ``schedules`` and
``runs prune``. Each works on the local store or, with ``--url``, on a Flue server."""

from __future__ import annotations

import argparse
import json
import os
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from flue_core.cli.app import APP_ENV
from flue_core.cli.backends import LocalRuns, Runs, open_runs
from flue_core.cli.exits import Exit
from flue_core.cli.schedule_view import schedule_lines, schedules_table
from flue_core.cli.view import Output

if TYPE_CHECKING:
    from flue_core.cli.commands import Interrupts


def _runs(args: argparse.Namespace) -> AbstractAsyncContextManager[Runs]:
    """The runs, with the application's workflows when ``--app`` (or ``FLUE_APP``) names them locally."""
    app = None if args.url else (getattr(args, "app", None) or os.environ.get(APP_ENV) or None)
    return open_runs(url=args.url, headers=args.headers, live=args.live, app=app, store=args.store, execute=False)


async def signal(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Send a signal into a run; print its receipt (NDJSON) or a line saying it was sent."""
    async with _runs(args) as runs:
        with interrupts.stoppable():
            receipt = await runs.signal(args.run_id, args.name, args.data, args.key)
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if out.ndjson:
        out.line(receipt.model_dump_json())
    else:
        again = " (sent before with this key; delivered once)" if receipt.duplicate else ""
        out.line(f"{out.style(receipt.signal_id, 'bold')}  {receipt.name} → {receipt.run_id}{again}")
    return Exit.COMPLETED


async def schedules(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """List, create, show, pause, resume or delete schedules."""
    action = args.schedule_command
    async with _runs(args) as runs:
        with interrupts.stoppable():
            if action == "list":
                found = await runs.schedules()
            elif action == "show":
                found = [await runs.schedule(args.name, args.ticks, args.runs)]
            elif action == "create":
                definition = {
                    "name": args.name,
                    "workflow": args.workflow,
                    "cron": args.cron,
                    "input": args.input,
                    "timezone": args.timezone,
                    "catchup": args.catchup,
                    "paused": args.paused,
                }
                found = [await runs.create_schedule(definition)]
            else:
                changed = await runs.change_schedule(args.name, action)
                found = [] if changed is None else [changed]
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if action == "delete":
        if not out.ndjson:
            out.line(f"deleted schedule {args.name}")
        return Exit.COMPLETED
    if out.ndjson:
        for schedule in found:
            out.line(schedule.model_dump_json())
    elif not found:
        out.line("no schedules")
    else:
        shown = schedule_lines(found[0], out) if action == "show" else schedules_table(found, out)
        for line in shown:
            out.line(line)
    return Exit.COMPLETED


async def prune(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Delete the runs of the local store that ended longer than ``--older-than`` ago."""
    async with _runs(args) as runs:
        assert isinstance(runs, LocalRuns)
        with interrupts.stoppable():
            count = await runs.prune(args.older_than)
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if out.ndjson:
        out.line(json.dumps({"pruned": count}))
    else:
        out.line(f"pruned {count} run(s) that ended more than {args.older_than} ago")
    return Exit.COMPLETED

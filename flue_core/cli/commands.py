"""The sub-commands: ``start``, ``logs``, ``runs``, ``cancel``, ``rerun`` and ``dashboard`` (``serve``
is in :mod:`flue_core.cli.server`, ``worker`` in :mod:`flue_core.cli.worker`).

Each async command gets its parsed arguments, the :class:`Output` and the :class:`Interrupts`, and
returns an exit code; errors are raised as :class:`~flue_core.errors.FlueError` and mapped by ``main``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, ExitStack, contextmanager

import anyio
import anyio.abc

from flue_core.cli import manage
from flue_core.cli.app import APP_ENV, app_runtime, reader_runtime
from flue_core.cli.backends import Runs, open_runs
from flue_core.cli.exits import OUTCOMES, RUN_UNTIL_STOPPED, Exit, reworded
from flue_core.cli.view import EventView, Output, records_table
from flue_core.cli.replay import export_histories, replay
from flue_core.cli.worker import worker
from flue_core.errors import FlueError, RunFinished, RunNotFound
from flue_core.models import Event

Command = Callable[[argparse.Namespace, Output, "Interrupts"], Awaitable[int]]


class Interrupts:
    """SIGINT and SIGTERM stop a command cleanly: its :meth:`stoppable` block is cancelled, while
    what surrounds it (an open runtime, a client) is closed normally afterwards.

    A command may :meth:`claim` the first signal: it is then told through :attr:`first` instead of
    being stopped (a local ``start`` cancels its run and waits for it to end); a second signal stops
    it. For a command that runs until stopped (``dashboard``, ``worker``), :attr:`stop_is_success`:
    being stopped is its normal end, exit 0, as for ``flue serve``.

    A signal that comes once the command was stopped, while it is still closing (a runtime giving
    its runs their shutdown grace), ends it at once: the host task is cancelled the way asyncio's
    runner cancels it on a second Ctrl-C, which cuts through the grace (the runtime then ends or
    hands back its runs and closes its store), and :attr:`cut_short` is set.
    """

    def __init__(self, stop_is_success: bool = False) -> None:
        self.signal: int | None = None
        self.stop_is_success = stop_is_success
        self.cut_short = False
        self.first = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._claimed = False
        self._stop = False
        self._host = asyncio.current_task()

    def claim(self) -> None:
        self._claimed = True

    @contextmanager
    def stoppable(self) -> Iterator[None]:
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._stop:  # a signal came while the command was still setting up
                scope.cancel()
            yield
        self._scope = None

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if self.signal is None:
                self.signal = signum
                if self._claimed:
                    self.first.set()
                    continue
            if self._stop and self._host is not None:
                self.cut_short = True
                self._host.cancel()  # not an anyio cancellation: those stop at the shielded grace
                return
            self._stop = True
            if self._scope is not None:
                self._scope.cancel()

    def exit_code(self, code: int) -> int:
        """The command's exit ``code``, unless a signal stopped it: then 0 for a command that runs
        until stopped, else 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        if self.signal is None:
            return code
        return Exit.COMPLETED if self.stop_is_success else 128 + self.signal


@contextmanager
def _signal_receiver() -> Iterator[AsyncIterator[int] | None]:
    with ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except ValueError:  # not the main thread (main() called from a worker thread): default handling
            signals = None
        yield signals  # only opening may be refused: an error of the command itself passes through


async def run(command: Command, args: argparse.Namespace, out: Output) -> int:
    """Run one command under signal handling (see :class:`Interrupts`)."""
    interrupts = Interrupts(stop_is_success=args.command in RUN_UNTIL_STOPPED)
    code: int = Exit.INTERRUPTED
    try:
        async with anyio.create_task_group() as tasks:
            with _signal_receiver() as signals:
                if signals is not None:
                    tasks.start_soon(interrupts.watch, signals)
                try:
                    code = await command(args, out, interrupts)
                finally:
                    tasks.cancel_scope.cancel()
    except asyncio.CancelledError:
        if not interrupts.cut_short:
            raise
    return interrupts.exit_code(code)


def _runs(args: argparse.Namespace, *, execute: bool = False) -> AbstractAsyncContextManager[Runs]:
    return open_runs(
        url=args.url,
        headers=args.headers,
        live=args.live,
        app=getattr(args, "app", None),
        store=args.store,
        execute=execute,
    )


async def show_events(events: AsyncIterator[Event], view: EventView) -> int:
    """Feed events to the view; the exit code is the outcome of a ``run_end`` seen, else 0."""
    code = Exit.COMPLETED
    try:
        async for event in events:
            view.event(event)
            if event.type == "run_end":
                code = OUTCOMES.get(str(event.data.get("status")), Exit.FAILED)
    finally:
        view.close()
    return code


async def start(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Admit a run, print its receipt, then wait for its end (printing events with ``--follow``).

    Locally this process executes the run, so it always waits; the first Ctrl-C cancels the run.
    """
    async with _runs(args, execute=not args.url) as runs:
        receipt = await runs.start(
            args.workflow, args.input, args.key, delay=args.delay, at=args.at, priority=args.priority
        )
        if out.ndjson:
            if not args.follow:
                out.line(receipt.model_dump_json())
        else:
            out.line(f"{out.style(receipt.run_id, 'bold')}  {receipt.workflow}  admitted")
        if args.detach:
            return Exit.COMPLETED
        view = EventView(out, show_events=args.follow)
        code: int = Exit.INTERRUPTED
        if not runs.executes:
            with interrupts.stoppable():
                try:
                    code = await show_events(runs.events(receipt.run_id, "-1", True), view)
                except RunNotFound as exc:  # admitted, but the server keeps its events from us
                    raise reworded(
                        exc,
                        f"Run {receipt.run_id} was admitted, but the server does not let this client read it,"
                        " so its end cannot be awaited: pass the headers the server's read policy wants,"
                        " or --detach.",
                    ) from None
            return code
        interrupts.claim()
        with interrupts.stoppable():
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_cancel_when_interrupted, interrupts, runs, receipt.run_id)
                code = await show_events(runs.events(receipt.run_id, "-1", True), view)
                tasks.cancel_scope.cancel()
        return code


async def _cancel_when_interrupted(interrupts: Interrupts, runs: Runs, run_id: str) -> None:
    await interrupts.first.wait()
    print(f"flue: cancelling {run_id} (interrupt again to stop at once)", file=sys.stderr)
    with contextlib.suppress(RunFinished):  # it ended on its own meanwhile: its end is shown
        await runs.cancel(run_id)


async def logs(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Print a run's events after ``--offset``; with ``--follow`` until the run ends."""
    code: int = Exit.INTERRUPTED
    async with _runs(args) as runs:
        with interrupts.stoppable():
            code = await show_events(runs.events(args.run_id, args.offset, args.follow), EventView(out))
    return code


async def list_runs(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """One page of runs, newest first; the next page's cursor goes to stderr (stdout in text)."""
    async with _runs(args) as runs:
        with interrupts.stoppable():
            page = await runs.list(args.workflow, args.status, args.limit, args.cursor, args.parent, args.rerun_of)
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if out.ndjson:
        for record in page.runs:
            out.line(record.model_dump_json())
        if page.next_cursor:
            print(f"flue: more runs: --cursor {page.next_cursor}", file=sys.stderr)
        return Exit.COMPLETED
    if not page.runs:
        out.line("no runs")
    else:
        for line in records_table(page.runs, out):
            out.line(line)
    if page.next_cursor:
        out.line(out.style(f"more: flue runs --cursor {page.next_cursor}", "dim"))
    return Exit.COMPLETED


async def cancel(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Cancel a run; print its record (NDJSON) or its state. A run still stopping is not an error."""
    async with _runs(args) as runs:
        with interrupts.stoppable():
            record = await runs.cancel(args.run_id)
    if interrupts.signal is not None:
        return Exit.INTERRUPTED
    if out.ndjson:
        out.line(record.model_dump_json())
    elif record.finished:
        out.line(f"{out.style(record.run_id, 'bold')}  {record.workflow}  cancelled")
    else:
        out.line(f"{out.style(record.run_id, 'bold')}  {record.workflow}  cancel requested; it stops at its next await")
    return Exit.COMPLETED


async def rerun(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Re-run a finished run and print the new run's id. A server executes it: the command returns
    (with ``--follow``, once it ended). Locally this process executes it, so it waits for its end,
    as a local ``start`` does; the exit code is then the new run's outcome."""
    async with _runs(args, execute=not args.url) as runs:
        receipt = await runs.rerun(args.run_id, args.from_step, args.key)
        if out.ndjson:
            if not args.follow:
                out.line(receipt.model_dump_json())
        else:
            out.line(f"{out.style(receipt.run_id, 'bold')}  {receipt.workflow}  admitted, re-run of {args.run_id}")
        if not (runs.executes or args.follow):
            return Exit.COMPLETED
        return await _until_end(runs, receipt.run_id, EventView(out, show_events=args.follow), interrupts)


async def _until_end(runs: Runs, run_id: str, view: EventView, interrupts: Interrupts) -> int:
    """Show the run's events until it ends; the exit code is its outcome. A run this process
    executes is cancelled by the first interrupt, and its end still shown; one elsewhere goes on."""
    code: int = Exit.INTERRUPTED
    if runs.executes:
        interrupts.claim()
    with interrupts.stoppable():
        async with anyio.create_task_group() as tasks:
            if runs.executes:
                tasks.start_soon(_cancel_when_interrupted, interrupts, runs, run_id)
            code = await show_events(runs.events(run_id, "-1", True), view)
            tasks.cancel_scope.cancel()
    return code


class CannotServe(FlueError):
    """The dashboard's server could not listen where it was asked to (the port is taken, say)."""

    code = "cannot_serve"
    status = 503


async def dashboard(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """Serve the app's runs with the dashboard on ``--host:--port`` until stopped, and print the
    secret link that grants a browser access (:class:`~flue_core.dashboard.LinkAccess`)."""
    from flue_core.dashboard import LinkAccess
    from flue_core.http import create_app, serve

    spec = args.app or os.environ.get(APP_ENV)
    runtime = app_runtime(spec, args.store) if spec else reader_runtime(args.store)
    access = LinkAccess()
    app = create_app(runtime, dashboard=True, **access.app_options(schedules=True))
    async with AsyncExitStack() as opened:
        await opened.enter_async_context(runtime)
        try:
            url = await opened.enter_async_context(serve(app, host=args.host, port=args.port))
        except OSError as exc:
            raise CannotServe(f"Cannot serve the dashboard on {args.host}:{args.port}: {exc.strerror or exc}.") from None
        link = access.link(f"{url}{app.state.dashboard}/")
        print("flue: serving the dashboard until Ctrl-C; this link grants access to whoever opens it:", file=sys.stderr)
        out.line(link)
        if args.open:
            webbrowser.open(link)
        with interrupts.stoppable():
            await anyio.sleep_forever()
    return Exit.COMPLETED


async def runs_command(args: argparse.Namespace, out: Output, interrupts: Interrupts) -> int:
    """``flue runs``: a page of runs, with ``prune`` the deletion of old ones, with ``export`` their histories."""
    if args.action == "prune":
        return await manage.prune(args, out, interrupts)
    if args.action == "export":
        return await export_histories(args, out, interrupts)
    return await list_runs(args, out, interrupts)


COMMANDS: dict[str, Command] = {
    "start": start,
    "logs": logs,
    "runs": runs_command,
    "cancel": cancel,
    "rerun": rerun,
    "signal": manage.signal,
    "schedules": manage.schedules,
    "dashboard": dashboard,
    "worker": worker,
    "replay": replay,
}

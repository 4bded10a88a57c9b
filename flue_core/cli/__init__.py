"""The ``flue`` command: ``serve``, ``start``, ``logs``, ``runs``, ``replay``, ``dashboard`` and ``worker`` (see ``docs/cli.md``).

``main(argv)`` returns the exit code (see :mod:`flue_core.cli.exits`); the console script passes it
to ``sys.exit``. Output goes to stdout (NDJSON when piped, text and a live view on a terminal);
diagnostics and errors, ``flue: <code>: <message>``, go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import anyio

from flue_core.cli.commands import COMMANDS, run
from flue_core.cli.exits import RUN_UNTIL_STOPPED, Exit, exit_code
from flue_core.cli.parser import parse_args
from flue_core.cli.server import serve
from flue_core.cli.stopping import sigterm_as_ctrl_c
from flue_core.cli.view import Output
from flue_core.errors import FlueError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flue`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    SIGTERM stops every command as Ctrl-C does (:mod:`flue_core.cli.stopping`), so the process
    ends by returning here, its exit handlers run: ``serve``, ``dashboard`` and ``worker``, which
    run until stopped, exit 0; other commands 130 for SIGINT, 143 for SIGTERM."""
    command: str | None = None
    with sigterm_as_ctrl_c() as stop:
        try:
            try:
                args = parse_args(argv)
                command = args.command
                if command == "serve":
                    return serve(args)
                _quiet_run_logs()
                return anyio.run(run, COMMANDS[command], args, Output(sys.stdout, args.format), **_loop(command))
            except BaseExceptionGroup as group:
                raise _sole(group) from None
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else 0
        except FlueError as error:
            report(error)
            return exit_code(error)
        except KeyboardInterrupt:  # a signal outside a command's own handling (while it starts, say)
            if command in RUN_UNTIL_STOPPED:
                return Exit.COMPLETED
            return Exit.TERMINATED if stop.terminated else Exit.INTERRUPTED
        except BrokenPipeError:  # the reader went away (`flue logs ... | head`): stop quietly, as SIGPIPE would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
            return Exit.BROKEN_PIPE
        except Exception:
            print("flue: internal_error: an unexpected error occurred; please report it:", file=sys.stderr)
            traceback.print_exc()
            return Exit.INTERNAL


def report(error: FlueError) -> None:
    """``flue: <code>: <message>`` on stderr, then each problem of an invalid input."""
    print(f"flue: {error.code}: {error.message}", file=sys.stderr)
    problems = error.details.get("errors")
    for problem in problems if isinstance(problems, list) else ():
        if isinstance(problem, dict):
            where = ".".join(str(part) for part in problem.get("loc") or ()) or "input"
            print(f"  {where}: {problem.get('message', problem)}", file=sys.stderr)


def _quiet_run_logs() -> None:
    """Workflows' ``ctx.log`` lines are events the command prints already; unless the application
    configured logging, keep Python's last-resort handler from echoing them to stderr."""
    run_logger = logging.getLogger("flue.run")
    if not logging.getLogger().handlers and not run_logger.handlers:
        run_logger.addHandler(logging.NullHandler())


def _loop(command: str) -> dict[str, Any]:
    """The dashboard is a server: on uvloop where installed, as `flue serve` (uvicorn picks it itself)."""
    if command != "dashboard":
        return {}
    from flue_core.http.server import event_loop_options  # loads uvicorn: only for the server

    return event_loop_options()


def _sole(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside (nested) task-group wrappers, else the group itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error

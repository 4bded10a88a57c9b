"""Exit codes of the ``flue`` command and how errors map to them.

A command that follows a run exits with the run's outcome; every other failure has its own code, so
scripts can tell "the run failed" from "the server was unreachable" without parsing output.
"""

from __future__ import annotations

from enum import IntEnum

from flue_core.client import make_error
from flue_core.errors import ConfigurationError, FlueError


class Exit(IntEnum):
    """The exit codes. Codes 64-78 follow the BSD ``sysexits`` convention."""

    COMPLETED = 0  # the run completed, or a command without a run succeeded
    FAILED = 1  # the run ended failed
    CANCELLED = 2  # the run ended cancelled
    USAGE = 64  # bad command line: unknown option, malformed --input or --header
    REJECTED = 65  # the request was refused: invalid input, bad offset or cursor, denied, key conflict
    NOT_FOUND = 66  # no such run or workflow (or not readable: a server answers both with 404)
    UNAVAILABLE = 69  # the server or the store could not be reached, or answered with a 5xx error
    INTERNAL = 70  # a bug: an unexpected exception
    CONFIG = 78  # the application or store is configured wrongly (--app, --store, FLUE_*)
    INTERRUPTED = 130  # a command that waits (start, logs -f...) stopped by Ctrl-C (SIGINT), as 128 + 2
    TERMINATED = 143  # the same stopped by SIGTERM, as 128 + 15 (serve, dashboard, worker exit 0)
    BROKEN_PIPE = 141  # stdout's reader went away (`flue logs ... | head`), as SIGPIPE would


#: The commands that run until stopped: SIGINT or SIGTERM is their normal end, exit 0.
RUN_UNTIL_STOPPED = frozenset({"serve", "dashboard", "worker"})

#: The exit code of a run that ended with each status.
OUTCOMES = {"completed": Exit.COMPLETED, "failed": Exit.FAILED, "cancelled": Exit.CANCELLED}


class UsageError(FlueError):
    """The command line is wrong; the message says how."""

    code = "usage_error"
    status = 400


def exit_code(error: FlueError) -> Exit:
    """The exit code for an error, by its kind and HTTP status (local and remote errors alike)."""
    if isinstance(error, UsageError):
        return Exit.USAGE
    if isinstance(error, ConfigurationError):
        return Exit.CONFIG
    if error.status == 404:
        return Exit.NOT_FOUND
    if 400 <= error.status < 500:
        return Exit.REJECTED
    if error.status in (502, 503, 504):
        return Exit.UNAVAILABLE
    return Exit.INTERNAL


def reworded(error: FlueError, message: str) -> FlueError:
    """The same error (class, ``code``, ``status``, ``details``) with a message that says more."""
    return make_error(type(error), message, details=error.details, code=error.code, status=error.status)

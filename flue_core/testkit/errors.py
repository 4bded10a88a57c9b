"""The errors of the test environment: each a :class:`~flue_core.errors.FlueError` with a stable code,
raised where a test's expectation or request cannot hold."""

from __future__ import annotations

from flue_core.errors import FlueError


class TestkitError(FlueError):
    """Root of the test environment's own errors."""

    __test__ = False  # not a test class, whatever pytest makes of its name
    code = "testkit_error"


class InvalidTimeAdvance(TestkitError, ValueError):
    """Time was asked to go back (``advance`` by a negative amount, ``advance_to`` an earlier time), or
    a time was given without its offset."""

    code = "invalid_time_advance"


class InvalidStepDouble(TestkitError, ValueError):
    """A step double names no possible step (``#`` inside a name, an empty name...) or has nothing to stand in with."""

    code = "invalid_step_double"


class UnusedStepDouble(TestkitError):
    """A step double was never called: no step of that name ran during the test (a typo, or a step
    the workflow does not have). ``details["unused"]`` lists them, ``details["ran"]`` the steps that ran."""

    code = "step_double_unused"


class RunStuck(TestkitError):
    """A run the test waits for cannot get further: it waits for something nothing in the environment
    will bring (a signal not sent, a child that waits too), or for time the test did not let pass."""

    code = "run_stuck"


class UnexpectedRunEnd(TestkitError):
    """A run ended while the test expected it to wait (``env.waiting``); ``details`` say how it ended."""

    code = "unexpected_run_end"


class SettleTimeout(TestkitError):
    """Runs were still executing after the environment's ``settle_timeout`` of real seconds (a step
    that waits for real I/O, or a workflow that never reaches a durable wait)."""

    code = "settle_timeout"

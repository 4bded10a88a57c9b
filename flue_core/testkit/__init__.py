"""Testing workflows: a test environment with virtual time, step doubles, and helpers for signals,
child runs and events (``docs/testing.md``).

    from flue_core.testkit import TestEnvironment

    async with TestEnvironment([expense_approval]) as env:
        run = await env.start(expense_approval, input={"amount": 120})
        await env.advance(hours=24)
        assert await env.result(run) == {"status": "expired"}

With pytest, the ``flue_env`` fixture (this package's pytest plugin) opens one per test.
"""

from flue_core.testkit.clock import VirtualClock
from flue_core.testkit.doubles import REAL, StepCall, StepDoubles
from flue_core.testkit.environment import TestEnvironment
from flue_core.testkit.errors import (
    InvalidStepDouble,
    InvalidTimeAdvance,
    RunStuck,
    SettleTimeout,
    TestkitError,
    UnexpectedRunEnd,
    UnusedStepDouble,
)

__all__ = [
    "REAL",
    "InvalidStepDouble",
    "InvalidTimeAdvance",
    "RunStuck",
    "SettleTimeout",
    "StepCall",
    "StepDoubles",
    "TestEnvironment",
    "TestkitError",
    "UnexpectedRunEnd",
    "UnusedStepDouble",
    "VirtualClock",
]

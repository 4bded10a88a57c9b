"""Flow-control settings refused when a workflow is defined, each with a typed error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flue_core import RunContext, workflow
from flue_core.errors import InvalidWorkflowDefinition
from flue_core.flow.policy import RateLimit
from flue_core.testing.flow import Tenant


def _define(**options: Any) -> None:
    async def fn(ctx: RunContext, input: Tenant) -> None:
        return None

    workflow(name="contract-bad", **options)(fn)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency_key": "customer"},  # no concurrency
        {"concurrency": 1, "concurrency_key": 5},
        {"rate_limit": RateLimit(0, 1.0)},
        {"rate_limit": RateLimit(1, 0)},
        {"rate_limit": (10, 1)},
        {"priority": 101},
        {"priority": -101},
        {"priority": 1.5},
        {"debounce": 0},
        {"debounce_key": "customer"},  # no window
    ],
)
def test_bad_flow_settings_are_refused_when_the_workflow_is_defined(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidWorkflowDefinition):
        _define(**options)


def test_good_settings_give_the_limits_the_store_applies() -> None:
    async def fn(ctx: RunContext, input: Tenant) -> None:
        return None

    wf = workflow(
        name="contract-good", concurrency=3, concurrency_key="customer", rate_limit=RateLimit(100, timedelta(minutes=1)),
        priority=-7, debounce=timedelta(seconds=2), debounce_key=lambda input: input.customer,
    )(fn)  # fmt: skip
    assert (wf.limits.concurrency, wf.limits.rate, wf.limits.per) == (3, 100, 60.0)
    assert wf.flow.priority == -7 and wf.flow.debounce == 2.0

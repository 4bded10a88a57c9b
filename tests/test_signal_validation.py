"""Signal data a model refuses: when it is sent (the model the workflow declares) and when a wait takes
it (``wait_for_signal(model=)``), the error names each problem, field and message, in its message:
what a person sees in a toast, a CLI line or a failed run's error, where ``details`` are not shown."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.errors import InvalidSignal
from flue_core.signals import LISTED_PROBLEMS, problems
from flue_core.testing.base import wait_for_status

pytestmark = pytest.mark.anyio


class Decision(BaseModel):
    approved: bool
    by: str


@workflow(name="declared-decision", signals={"decision": Decision})
async def declared(ctx: RunContext) -> dict:
    decision = await ctx.wait_for_signal("decision")
    return {"approved": decision.approved}


@workflow(name="undeclared-decision", retries=1)
async def undeclared(ctx: RunContext) -> dict:
    decision = await ctx.wait_for_signal("decision", model=Decision)  # validated only when taken
    return {"approved": decision.approved}


async def test_data_the_declared_model_refuses_is_refused_naming_each_problem():
    async with Runtime([declared], store="memory://") as runtime:
        receipt = await workflows.start(declared, runtime=runtime)
        await wait_for_status(runtime, receipt.run_id, "waiting")
        with pytest.raises(InvalidSignal) as caught:
            await runs.signal(receipt.run_id, "decision", {"approved": "perhaps"}, runtime=runtime)
        assert caught.value.message == (
            "Data of signal 'decision' is invalid: 2 problem(s): "
            "approved: Input should be a valid boolean, unable to interpret input; by: Field required."
        )
        assert [error["loc"] for error in caught.value.details["errors"]] == [["approved"], ["by"]]


async def test_data_a_waits_model_refuses_fails_the_run_as_a_workflow_error_naming_each_problem():
    async with Runtime([undeclared], store="memory://") as runtime:
        receipt = await workflows.start(undeclared, runtime=runtime)
        await runs.signal(receipt.run_id, "decision", {"approved": "perhaps", "by": "ada"}, runtime=runtime)
        record = await runs.wait(receipt.run_id, timeout=10, runtime=runtime)
        assert record.status == "failed" and record.error is not None
        assert (record.error.code, record.error.type) == ("workflow_error", "flue_core.errors.InvalidSignal")
        assert record.error.message == (
            "Signal 'decision' does not match 'Decision': 1 problem(s): "
            "approved: Input should be a valid boolean, unable to interpret input."
        )
        # The retry took the same signal again (the wait's outcome is stored) and failed the same way.
        assert record.attempt == 2


def test_a_long_list_of_problems_is_cut_short_in_the_message():
    errors = [{"loc": [f"field{n}"], "message": "Field required", "type": "missing"} for n in range(LISTED_PROBLEMS + 2)]
    text = problems(errors)
    assert text.startswith(f"{LISTED_PROBLEMS + 2} problem(s): field0: Field required; ")
    assert text.endswith(f"field{LISTED_PROBLEMS - 1}: Field required; and 2 more.")
    assert problems([{"loc": [], "message": "Input should be a valid dictionary", "type": "dict_type"}]) == (
        "1 problem(s): (the data): Input should be a valid dictionary."
    )

"""``ctx.wait_for_all`` when children fail: it waits for every child, then raises for the first child
in the order given that did not complete, not for the first to fail (docs/child-runs.md)."""

from __future__ import annotations

import anyio
import pytest

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.errors import RunFailed
from flue_core.testing.base import GATES, gates, wait_for_status

pytestmark = pytest.mark.anyio


@workflow(name="all-child")
async def child(ctx: RunContext, input: dict) -> str:
    if "gate" in input:
        await GATES[input["gate"]].wait()
    if "fail" in input:
        raise RuntimeError(input["fail"])
    return "done"


@workflow(name="all-parent")
async def parent(ctx: RunContext, input: dict) -> dict:
    children = [await ctx.start_child(child, input=each) for each in input["children"]]
    try:
        return {"results": await ctx.wait_for_all(children)}
    except RunFailed as error:
        return {"raised_for": error.details["run_id"], "children": [c.run_id for c in children]}


async def test_wait_for_all_waits_for_every_child_then_raises_for_the_first_in_order_that_failed():
    with gates() as gate:
        first, second = gate(), gate()
        inputs = [{"gate": first}, {"gate": second, "fail": "second"}, {"fail": "third"}]
        async with Runtime([child, parent], store="memory://") as runtime:
            receipt = await workflows.start(parent, input={"children": inputs}, runtime=runtime)
            found = {str(run.input): run.run_id for run in await _children(runtime, receipt.run_id, 3)}
            children = [found[str(each)] for each in inputs]
            await wait_for_status(runtime, children[2], "failed")
            GATES[second].set()
            await wait_for_status(runtime, children[1], "failed")
            await anyio.sleep(0.1)
            assert (await runs.get(receipt.run_id, runtime=runtime)).status == "waiting"  # the first still runs
            GATES[first].set()
            result = await runs.result(receipt.run_id, timeout=10, runtime=runtime)
            assert result == {"raised_for": children[1], "children": children}  # not the third, which failed first
            assert (await runs.get(children[0], runtime=runtime)).status == "completed"


async def _children(runtime: Runtime, run_id: str, count: int) -> list:
    with anyio.fail_after(5):
        while len(found := (await runs.list(parent=run_id, runtime=runtime)).runs) < count:
            await anyio.sleep(0.01)
    return found

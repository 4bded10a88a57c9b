"""An approval flow: an expense run waits for a human's decision, sent over HTTP as a signal.

Run ``python examples/approval.py``: it serves the app on 127.0.0.1:3590, starts a run of
``expense-approval`` and prints the ``curl`` command that approves it. While it waits, the run is
``waiting`` in the store (no slot, no task); the signal wakes it, and it ends with the decision. A
decision that does not come within a day is a timeout the workflow handles itself.
``--approve`` sends the signal itself (what the test of this example does).
"""

from __future__ import annotations

import argparse
from contextlib import suppress

import anyio
import httpx
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.cli.stopping import sigterm_as_ctrl_c
from flue_core.errors import SignalTimeout
from flue_core.http import create_app, serve

PORT = 3590


class Expense(BaseModel):
    employee: str
    amount: float


class Decision(BaseModel):
    approved: bool
    by: str
    note: str = ""


@workflow(name="expense-approval", http=True, signals={"decision": Decision})
async def expense_approval(ctx: RunContext, input: Expense) -> dict:
    ctx.log.info("waiting for a decision", employee=input.employee, amount=input.amount)
    try:
        decision = await ctx.wait_for_signal("decision", timeout=24 * 3600)
    except SignalTimeout:
        return {"status": "expired"}
    if decision.approved:
        await ctx.step("pay", pay, input.employee, input.amount)
    return {"status": "approved" if decision.approved else "rejected", "by": decision.by}


async def pay(employee: str, amount: float) -> str:
    return f"paid {amount:.2f} to {employee}"  # stands in for a payment call


def approvers(request, run) -> bool:  # type: ignore[no-untyped-def]
    return request.headers.get("authorization") == "Bearer approver-secret"  # stands in for real auth


async def main(approve: bool, port: int) -> None:
    runtime = Runtime([expense_approval])
    app = create_app(runtime, authorize_run_read=approvers, authorize_run_signal=approvers)
    async with runtime, serve(app, port=port) as url:
        receipt = await workflows.start(expense_approval, input={"employee": "ada", "amount": 120.5})
        with anyio.fail_after(10):
            while (await runs.get(receipt.run_id)).status != "waiting":  # type: ignore[union-attr]
                await anyio.sleep(0.05)
        signal_url = f"{url}/runs/{receipt.run_id}/signals/decision"
        print(f"run {receipt.run_id} is waiting for a decision. Approve it with:\n")
        print(f"  curl -X POST {signal_url} \\\n    -H 'Authorization: Bearer approver-secret' \\")
        print("""    -H 'Content-Type: application/json' -d '{"approved": true, "by": "grace"}'\n""")
        if approve:
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    signal_url,
                    json={"approved": True, "by": "grace"},
                    headers={"authorization": "Bearer approver-secret"},
                )
                answer.raise_for_status()
        print("result:", await runs.result(receipt.run_id))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--approve", action="store_true", help="send the approving signal from here")
    parser.add_argument("--port", type=int, default=PORT)
    options = parser.parse_args()
    with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):  # a deploy's SIGTERM stops it as Ctrl-C does
        anyio.run(main, options.approve, options.port)

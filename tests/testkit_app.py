"""Workflows the test environment's tests drive: an approval that waits a day, a reminder that sleeps
for days, a flaky charge, a fan-out, a delayed report and an hourly tick."""

from __future__ import annotations

from pydantic import BaseModel

from flue_core import RunContext, workflow
from flue_core.errors import SignalTimeout


class Decision(BaseModel):
    approved: bool
    by: str


async def notify_approvers(amount: int) -> dict:
    raise AssertionError("the tests double this step")


async def pay(amount: int) -> dict:
    return {"paid": amount}


@workflow(name="approval", signals={"decision": Decision})
async def approval(ctx: RunContext, input: dict) -> dict:
    await ctx.step("notify", notify_approvers, input["amount"])
    try:
        decision = await ctx.wait_for_signal("decision", timeout=24 * 3600)
    except SignalTimeout:
        return {"status": "expired", "at": ctx.now().isoformat()}
    if decision.approved:
        await ctx.step("pay", pay, input["amount"])
    return {"status": "approved" if decision.approved else "rejected", "by": decision.by}


async def send(message: str) -> str:
    return message


@workflow(name="reminder")
async def reminder(ctx: RunContext, input: dict) -> list:
    times = [ctx.now().isoformat()]
    await ctx.step("welcome", send, "welcome")
    await ctx.sleep(13 * 86400)
    times.append(ctx.now().isoformat())
    await ctx.step("remind", send, "your trial ends tomorrow")
    await ctx.sleep(86400)
    times.append(ctx.now().isoformat())
    return times


async def charge_card(amount: int) -> dict:
    return {"charged": amount}


@workflow(name="checkout", retries=2)
async def checkout(ctx: RunContext, input: dict) -> dict:
    receipt = await ctx.step("charge", charge_card, input["amount"], retries=3, backoff=10)
    return {"receipt": receipt, "attempt": ctx.attempt}


async def resize(image: str) -> dict:
    return {"image": image, "bytes": len(image) * 100}


@workflow(name="resize-one")
async def resize_one(ctx: RunContext, input: dict) -> dict:
    await ctx.sleep(60)
    return await ctx.step("resize", resize, input["image"])


@workflow(name="album")
async def album(ctx: RunContext, input: dict) -> dict:
    children = [await ctx.start_child(resize_one, input={"image": image}) for image in input["images"]]
    results = await ctx.wait_for_all(children)
    return {"resized": len(results), "bytes": sum(result["bytes"] for result in results)}


@workflow(name="report")
async def report(ctx: RunContext) -> str:
    return ctx.now().isoformat()


@workflow(name="hourly", schedule="0 * * * *")
async def hourly(ctx: RunContext) -> str:
    return ctx.now().isoformat()


ALL = [approval, reminder, checkout, resize_one, album, report, hourly]

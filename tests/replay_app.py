"""Versions of an order workflow for the replay check's tests: ``version(**changes)`` builds the
workflows as deployed with those changes; runs stored by ``version()`` are replayed against others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from flue_core import RunContext, workflow

EXECUTED: list[str] = []  # step functions called: a replay check must add nothing here


def track(name: str) -> Callable[..., Any]:
    async def step(*args: Any) -> str:
        EXECUTED.append(name)
        return name

    return step


class Order(BaseModel):
    sku: str
    quantity: int = 1


class StrictOrder(BaseModel):
    sku: str
    quantity: int
    coupon: str  # required now: stored orders lack it


class Approval(BaseModel):
    approved: bool


class SignedApproval(BaseModel):
    approved: bool
    by: str  # required now: stored approvals lack it


def version(
    *,
    reserve: str = "reserve",
    before_wait: str | None = None,
    wait: str = "approval",
    approval_model: type = Approval,
    order_model: type = Order,
    child: str = "ship",
    child_input: Callable[[Any], dict] = lambda order: {"sku": order.sku},
    swap: bool = False,
    raise_after_reserve: bool = False,
    patched: bool = False,
    parallel: bool = False,
    name: str = "order",
) -> list[Any]:
    @workflow(name="ship")
    async def ship(ctx: RunContext, input: dict) -> str:
        return await ctx.step("label", track("label"), input["sku"])

    @workflow(name="ship-express")
    async def ship_express(ctx: RunContext, input: dict) -> str:
        return await ctx.step("label", track("label"), input["sku"])

    @workflow(name=name, signals={"approval": approval_model}, input=order_model)
    async def order(ctx: RunContext, input: Any) -> dict:
        if parallel:
            import anyio

            async with anyio.create_task_group() as tasks:
                for step in ("price", "stock"):
                    tasks.start_soon(ctx.step, step, track(step))
        first, second = ("check", reserve) if not swap else (reserve, "check")
        await ctx.step(first, track(first), input.sku)
        await ctx.step(second, track(second), input.sku)
        if raise_after_reserve:
            raise KeyError("quantity")
        if before_wait == "step":
            await ctx.step("audit", track("audit"))
        elif before_wait == "sleep":
            await ctx.sleep(60)
        elif before_wait == "signal":
            await ctx.wait_for_signal("fraud-check")
        if patched and ctx.patched("audit-before-approval"):
            await ctx.step("audit", track("audit"))
        decision = await ctx.wait_for_signal(wait, timeout=86400)
        if not decision.approved:
            return {"status": "rejected"}
        started = await ctx.start_child(ship if child == "ship" else ship_express, input=child_input(input))
        label = await ctx.wait_for(started)
        await ctx.sleep(3600)
        await ctx.step("invoice", track("invoice"), input.sku)
        return {"status": "shipped", "label": label}

    return [order, ship, ship_express]

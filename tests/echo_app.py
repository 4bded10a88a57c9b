"""Workflows that return their input, exposed over HTTP: for tests of what values get in unchanged."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flue_core import RunContext, workflow


class Node(BaseModel):
    child: Node | None = None


@workflow(name="echo", http=True)
async def echo(ctx: RunContext, input: Any) -> Any:
    return input


@workflow(name="echo-dict", http=True)
async def echo_dict(ctx: RunContext, input: dict) -> Any:
    return input


@workflow(name="tree", http=True)
async def tree(ctx: RunContext, input: Node) -> Any:
    return input


@workflow(name="quick", http=True)
async def quick(ctx: RunContext) -> str:
    ctx.emit("note", {"text": "hello"})
    return "quick"

"""Fixtures, helpers and workflows shared by the contract suite."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from flue_core import RunContext, Runtime, runs, workflow
from flue_core.models import Event, RunRecord
from flue_core.target import Target

RUN_ID = r"^run_[0-9A-HJKMNP-TV-Z]{26}$"

#: Gates a workflow waits on, by name; tests open them. Counters of calls made by workflows.
GATES: dict[str, anyio.Event] = {}
CALLS: Counter[str] = Counter()


class Greeting(BaseModel):
    name: str
    times: int = 1


class Gate(BaseModel):
    gate: str
    fail_first: int = 0


@workflow(name="contract-greet")
async def greet(ctx: RunContext, input: Greeting) -> dict[str, Any]:
    ctx.log.info("greeting", name=input.name)
    ctx.emit("greeted", {"name": input.name})
    return {"greeting": " ".join([f"hello {input.name}"] * input.times)}


@workflow(name="contract-noinput")
async def no_input(ctx: RunContext) -> str:
    return "done"


@workflow(name="contract-gated")
async def gated(ctx: RunContext, input: Gate) -> str:
    ctx.emit("waiting", {"gate": input.gate})
    await GATES[input.gate].wait()
    ctx.emit("released", {"gate": input.gate})
    return "released"


@workflow(name="contract-gated-retry", retries=1, max_recoveries=0)
async def gated_retry(ctx: RunContext, input: Gate) -> str:
    first = await ctx.step("first", _count, f"{input.gate}:first")
    await GATES[input.gate].wait()
    return f"attempt {ctx.attempt}, first={first}"


@workflow(name="contract-resumable")
async def resumable(ctx: RunContext, input: Gate) -> str:
    first = await ctx.step("first", _count, f"{input.gate}:first")
    ctx.emit("waiting", {"gate": input.gate})
    await GATES[input.gate].wait()
    return f"attempt {ctx.attempt}, first={first}"


@workflow(name="contract-unrecoverable", max_recoveries=0)
async def unrecoverable(ctx: RunContext, input: Gate) -> str:
    return await resumable.fn(ctx, input)


@workflow(name="contract-recover-twice", max_recoveries=2)
async def recover_twice(ctx: RunContext, input: Gate) -> str:
    return await resumable.fn(ctx, input)


@workflow(name="contract-rerunnable")
async def rerunnable(ctx: RunContext, input: Gate) -> dict[str, Any]:
    a = await ctx.step("a", _count, f"{input.gate}:a")
    b = await ctx.step("b", _count, f"{input.gate}:b")
    CALLS[f"{input.gate}:runs"] += 1
    if CALLS[f"{input.gate}:runs"] <= input.fail_first:
        raise RuntimeError("the code after the steps has a bug")
    return {"a": a, "b": b}


@workflow(name="contract-flaky", retries=2)
async def flaky(ctx: RunContext, input: Gate) -> dict[str, Any]:
    value = await ctx.step("expensive", _count, f"{input.gate}:expensive")
    CALLS[f"{input.gate}:attempts"] += 1
    if CALLS[f"{input.gate}:attempts"] <= input.fail_first:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return {"attempt": ctx.attempt, "expensive": value}


@workflow(name="contract-fail")
async def fail(ctx: RunContext) -> None:
    raise ValueError("report generation failed")


def _count(key: str) -> int:
    CALLS[key] += 1
    return CALLS[key]


CONTRACT_WORKFLOWS = [greet, no_input, gated, gated_retry, flaky, fail, resumable, unrecoverable, recover_twice, rerunnable]


@contextmanager
def gates() -> Iterator[Callable[[], str]]:
    """A maker of closed gates (``name = make()``; ``GATES[name].set()`` opens one); every gate made
    is opened and forgotten on exit, so no workflow stays blocked after a test."""
    made: list[str] = []

    def make() -> str:
        name = uuid.uuid4().hex
        GATES[name] = anyio.Event()
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            GATES.pop(name).set()


class ContractBase:
    """Fixtures and helpers; the contract mixins build on these."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_target(self) -> Callable[[], Target]:
        raise NotImplementedError("Override `make_target` to return a factory of unopened targets.")

    @pytest.fixture
    def open_runtime(self, make_target: Callable[[], Target]) -> Callable[..., Any]:
        """``async with open_runtime(workflows=..., plugins=...) as rt`` over a fresh target."""

        @asynccontextmanager
        async def opener(workflows: Iterable[Any] = CONTRACT_WORKFLOWS, plugins: Iterable[object] = ()) -> AsyncIterator[Runtime]:
            async with Runtime(list(workflows), target=make_target(), plugins=plugins) as rt:
                yield rt

        return opener

    @pytest.fixture
    def gate(self) -> Iterator[Callable[[], str]]:
        """``name = gate()`` makes a closed gate; ``GATES[name].set()`` opens it."""
        with gates() as make:
            yield make


async def all_events(rt: Runtime, run_id: str) -> list[Event]:
    return [event async for event in runs.events(run_id, runtime=rt)]


async def wait_for_status(rt: Runtime, run_id: str, status: str, timeout: float = 5.0) -> RunRecord:
    with anyio.fail_after(timeout):
        while True:
            record = await runs.get(run_id, runtime=rt)
            if record is not None and record.status == status:
                return record
            await anyio.sleep(0.01)


async def wait_for_event(rt: Runtime, run_id: str, type: str, timeout: float = 5.0) -> Event:
    with anyio.fail_after(timeout):
        async for event in runs.events(run_id, follow=True, runtime=rt):
            if event.type == type:
                return event
    raise AssertionError(f"run {run_id} ended without a {type!r} event")

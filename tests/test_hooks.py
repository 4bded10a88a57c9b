"""Hooks: notifications reach every plugin (sync or async), failures stay contained, specs are documented."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import anyio
import pytest

from flue_core import RunContext, Runtime, hookimpl, hookspecs, runs, workflow, workflows
from flue_core.errors import ConfigurationError

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).parent.parent / "docs"


@workflow(name="hooks-demo")
async def demo(ctx: RunContext) -> str:
    ctx.emit("custom", {"x": 1})
    return "ok"


class Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    async def flue_run_admitted(self, run) -> None:
        await anyio.sleep(0)
        self.seen.append(("admitted", run.status))

    @hookimpl
    def flue_run_started(self, run) -> None:
        self.seen.append(("started", run.status))

    @hookimpl
    async def flue_event_emitted(self, event) -> None:
        self.seen.append(("event", event.type))

    @hookimpl
    def flue_run_finished(self, run) -> None:
        self.seen.append(("finished", run.status))


class Broken:
    @hookimpl
    def flue_run_admitted(self, run) -> None:
        raise RuntimeError("telemetry is down")

    @hookimpl
    async def flue_run_finished(self, run) -> None:
        raise RuntimeError("telemetry is down")


async def test_notification_hooks_see_each_stage_of_a_run():
    observer = Observer()
    async with Runtime([demo], store="memory://", plugins=[observer]):
        receipt = await workflows.start(demo)
        await runs.wait(receipt.run_id, timeout=5)
        with anyio.fail_after(5):
            while ("finished", "completed") not in observer.seen or len(observer.seen) < 5:
                await anyio.sleep(0.01)
    assert observer.seen[0] == ("admitted", "queued")
    assert ("started", "running") in observer.seen
    assert {("event", "run_start"), ("event", "custom")} <= set(observer.seen)
    assert observer.seen.index(("started", "running")) < observer.seen.index(("finished", "completed"))


async def test_a_failing_notification_hook_does_not_affect_the_run(caplog):
    with caplog.at_level(logging.ERROR, logger="flue"):
        async with Runtime([demo], store="memory://", plugins=[Broken()]):
            receipt = await workflows.start(demo)
            assert await runs.result(receipt.run_id, timeout=5) == "ok"
    assert "flue_run_admitted" in caplog.text and "telemetry is down" in caplog.text


def test_wrappers_around_awaited_hooks_are_refused():
    class Wrapper:
        @hookimpl(wrapper=True)
        def flue_schedule_run(self, run, runtime):
            return (yield)

    with pytest.raises(ConfigurationError, match="wrappers"):
        Runtime([], store="memory://", plugins=[Wrapper()])


def test_every_hookspec_states_its_contract_and_is_documented():
    specs = [name for name, value in vars(hookspecs).items() if name.startswith("flue_") and inspect.isfunction(value)]
    assert specs, "no hookspecs found"
    plugin_docs = (DOCS / "plugins.md").read_text()
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, f"{name} has no contract docstring"
        assert f"`{name}" in plugin_docs, f"{name} is missing from docs/plugins.md"


class Scopes:
    """Records what each scope saw on the way in and out."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def _scope(self, label: str):
        seen = self.seen

        class Recorder:
            def __enter__(self) -> None:
                seen.append(("enter", label))

            def __exit__(self, kind, error, tb) -> bool:
                seen.append(("exit", label, kind.__name__ if kind else ""))
                return True  # trying to swallow the error: Flue does not let it

        return Recorder()

    @hookimpl
    def flue_admission_scope(self, request):
        return self._scope(f"admission {request.workflow.name}")

    @hookimpl
    def flue_execution_scope(self, run, resumed):
        return self._scope(f"execution {run.workflow}")

    @hookimpl
    def flue_step_scope(self, run, step, try_number):
        return self._scope(f"step {step} {try_number}")


@workflow(name="hooks-flaky-step")
async def flaky_step(ctx: RunContext) -> str:
    tries = []

    def once() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("first try fails")
        return "fine"

    return await ctx.step("flaky", once, retries=1, backoff=0)


async def test_scopes_wrap_admission_execution_and_each_try_of_a_step_and_see_its_error():
    scopes = Scopes()
    async with Runtime([flaky_step], store="memory://", plugins=[scopes]):
        receipt = await workflows.start(flaky_step)
        assert await runs.result(receipt.run_id, timeout=5) == "fine"
    assert scopes.seen == [
        ("enter", "admission hooks-flaky-step"),
        ("exit", "admission hooks-flaky-step", ""),
        ("enter", "execution hooks-flaky-step"),
        ("enter", "step flaky 1"),
        ("exit", "step flaky 1", "ValueError"),
        ("enter", "step flaky 2"),
        ("exit", "step flaky 2", ""),
        ("exit", "execution hooks-flaky-step", ""),
    ]


async def test_a_failing_scope_does_not_affect_the_run(caplog):
    class BrokenScopes:
        @hookimpl
        def flue_execution_scope(self, run, resumed):
            raise RuntimeError("tracing is down")

        @hookimpl
        def flue_step_scope(self, run, step, try_number):
            class Unenterable:
                def __enter__(self):
                    raise RuntimeError("tracing is down")

                def __exit__(self, *exc_info):
                    raise AssertionError("never entered, so never exited")

            return Unenterable()

    with caplog.at_level(logging.ERROR, logger="flue"):
        async with Runtime([flaky_step], store="memory://", plugins=[BrokenScopes()]):
            receipt = await workflows.start(flaky_step)
            assert await runs.result(receipt.run_id, timeout=5) == "fine"
    assert "flue_execution_scope" in caplog.text and "flue_step_scope" in caplog.text

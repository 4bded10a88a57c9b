"""Finding workflows: explicit lists, packages, installed entry points; names stay unique."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from flue_core import RunContext, WorkflowNotFound, workflow
from flue_core.discovery import WorkflowRegistry, discover, discover_entry_points
from flue_core.errors import DuplicateWorkflow, InvalidWorkflowDefinition


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("shop", "reports_dist"))]:
        del sys.modules[name]


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


WORKFLOW_MODULE = """
from flue_core import workflow

@workflow(name="{name}")
async def run(ctx) -> str:
    return "{name}"
"""


def test_a_package_is_searched_recursively(on_path):
    write(on_path, "shop/__init__.py", "")
    write(on_path, "shop/workflows/__init__.py", "")
    write(on_path, "shop/workflows/orders.py", WORKFLOW_MODULE.format(name="orders"))
    write(on_path, "shop/workflows/billing/__init__.py", "")
    write(on_path, "shop/workflows/billing/invoices.py", WORKFLOW_MODULE.format(name="invoices"))
    write(on_path, "shop/workflows/reexport.py", "from shop.workflows.orders import run\n")
    names = sorted(wf.name for wf in discover("shop.workflows"))
    assert names == ["invoices", "orders"]  # re-exported objects count once


def test_an_explicit_list_mixes_workflows_and_modules(on_path):
    write(on_path, "shop/__init__.py", "")
    write(on_path, "shop/nightly.py", WORKFLOW_MODULE.format(name="nightly"))

    @workflow(name="inline")
    async def inline(ctx: RunContext) -> None:
        return None

    import shop.nightly

    assert [wf.name for wf in discover([inline, shop.nightly])] == ["inline", "nightly"]


def test_installed_distributions_publish_workflows_through_entry_points(on_path):
    write(on_path, "reports_dist/__init__.py", WORKFLOW_MODULE.format(name="weekly-report"))
    write(on_path, "reports_dist/more.py", WORKFLOW_MODULE.format(name="monthly-report"))
    dist_info = on_path / "reports_dist-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: reports-dist\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[flue.workflows]\nweekly = reports_dist:run\nmore = reports_dist.more\n"
    )
    assert sorted(wf.name for wf in discover_entry_points()) == ["monthly-report", "weekly-report"]


def test_two_workflows_with_one_name_are_refused():
    @workflow(name="twin")
    async def first(ctx: RunContext) -> None:
        return None

    @workflow(name="twin")
    async def second(ctx: RunContext) -> None:
        return None

    with pytest.raises(DuplicateWorkflow, match="twin"):
        WorkflowRegistry([first, second])
    assert len(WorkflowRegistry([first, first])) == 1


def test_objects_resolve_by_identity_and_names_by_name():
    @workflow(name="solo")
    async def solo(ctx: RunContext) -> None:
        return None

    registry = WorkflowRegistry([solo])
    assert registry.resolve(solo) is solo and registry.resolve("solo") is solo
    copy = workflow(name="solo")(solo.fn)
    with pytest.raises(WorkflowNotFound):
        registry.resolve(copy)
    with pytest.raises(WorkflowNotFound):
        registry.resolve("missing")


class Order(BaseModel):
    order_id: str


def test_the_input_type_comes_from_the_second_parameter():
    @workflow
    async def ship_order(ctx: RunContext, input: Order) -> None:
        return None

    assert ship_order.name == "ship-order" and ship_order.input_type is Order and ship_order.takes_input


@pytest.mark.parametrize(
    "build",
    [
        lambda: workflow(lambda ctx: None),
        lambda: workflow(name="bad name")(_valid),
        lambda: workflow(name="")(_valid),
        lambda: workflow(retries=-1)(_valid),
        lambda: workflow(timeout=0)(_valid),
        lambda: workflow(_three_parameters),
        lambda: workflow(name="name\n")(_valid),
        lambda: workflow(schedule_input={"a": 1})(_valid),
        lambda: workflow(schedule_timezone="Europe/Berlin")(_valid),
        lambda: workflow(schedule="* * * * * *")(_valid),
    ],
    ids=[
        "not-async",
        "space-in-name",
        "empty-name",
        "negative-retries",
        "zero-timeout",
        "three-parameters",
        "newline-after-name",
        "schedule-input-without-schedule",
        "schedule-zone-without-schedule",
        "cron-with-seconds",
    ],
)
def test_malformed_definitions_are_refused(build):
    with pytest.raises(InvalidWorkflowDefinition):
        build()


async def _valid(ctx: RunContext) -> None:
    return None


async def _three_parameters(ctx: RunContext, a: int, b: int) -> None:
    return None

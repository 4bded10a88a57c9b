"""Flue's own answers to its decision hooks, registered like any plugin and ``trylast`` so yours win."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ulid import ULID

from flue_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from flue_core.models import RunRecord
    from flue_core.runtime import Runtime


@hookimpl(trylast=True)
def flue_generate_run_id(workflow: str) -> str:
    # python-ulid's default generator is monotonic, so ids sort in admission order.
    return f"run_{ULID()}"


@hookimpl(trylast=True)
def flue_schedule_run(run: RunRecord, runtime: Runtime) -> bool:
    runtime.target.schedule(run)
    return True

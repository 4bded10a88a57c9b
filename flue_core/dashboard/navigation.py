"""The dashboard's sections (runs, schedules) that a viewer may open, linked from every page's top bar."""

from __future__ import annotations

from starlette.requests import Request

from flue_core.http.authorization import may_list_runs, may_manage_schedules
from flue_core.http.config import HttpConfig

#: Each section: its name, its label and its path under the dashboard's prefix.
SECTIONS = (("runs", "Runs", "/"), ("schedules", "Schedules", "/schedules"))


async def open_sections(config: HttpConfig, request: Request) -> list[str]:
    """The sections this viewer is granted: the runs page like ``GET /runs``, the schedules page (in an
    app with schedules) like ``GET /schedules``."""
    hook = config.runtime.pm.hook
    found = []
    if await may_list_runs(config.authorize_run_list, hook.flue_authorize_run_list, request):
        found.append("runs")
    if config.schedules_enabled and await may_manage_schedules(
        config.authorize_schedules, hook.flue_authorize_schedules, request
    ):
        found.append("schedules")
    return found

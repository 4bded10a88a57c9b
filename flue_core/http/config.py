"""What every endpoint of one app needs: the runtime and the app's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from flue_core.http.authorization import (
    RunCancelAuthorizer,
    RunListAuthorizer,
    RunReadAuthorizer,
    RunRerunAuthorizer,
    RunSignalAuthorizer,
    SchedulesAuthorizer,
)
from flue_core.public_url import run_url
from flue_core.runtime import Runtime, current_runtime

if TYPE_CHECKING:
    from flue_core.streams import ReadOptions


@dataclass(frozen=True, slots=True)
class HttpConfig:
    runtime: Runtime
    max_body_size: int
    wait_timeout: float | None
    authorize_run_read: RunReadAuthorizer | None
    authorize_run_list: RunListAuthorizer | None
    stream_options: ReadOptions | None
    authorize_run_cancel: RunCancelAuthorizer | None = None
    authorize_run_signal: RunSignalAuthorizer | None = None
    authorize_schedules: SchedulesAuthorizer | None = None
    authorize_run_rerun: RunRerunAuthorizer | None = None
    #: Whether the app serves ``/schedules`` (``create_app(schedules_enabled=True)``): the dashboard
    #: then has a schedules page too.
    schedules_enabled: bool = False

    def open_runtime(self) -> Runtime:
        """The runtime, which must be open (else :class:`~flue_core.errors.RuntimeNotRunning`, 503)."""
        return current_runtime(self.runtime)


def stream_path(request: Request, run_id: str) -> str:
    """``/runs/<id>`` under the path this app is mounted at (a Starlette ``Mount`` or ``--root-path``)."""
    return run_url(request.scope.get("root_path", "").rstrip("/"), run_id)

"""Where the commands find runs: the local store (through ``flue_core``'s API) or a Flue server.

Both give the commands the same operations, so each command is written once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

from flue_core import runs, schedules, workflows
from flue_core.cli.app import app_runtime, reader_runtime
from flue_core.cli.exits import UsageError, reworded
from flue_core.client import FlueClient, InvalidBaseUrl, LiveMode
from flue_core.errors import FlueError, RunNotFound
from flue_core.models import Event, RunPage, RunReceipt, RunRecord, Schedule, SignalReceipt, utc_now
from flue_core.runtime import Runtime
from flue_core.schedule_overview import ScheduleOverview

URL_ENV = "FLUE_URL"
TOKEN_ENV = "FLUE_TOKEN"


class Runs(Protocol):
    #: Whether runs started here execute in this process (so stopping the process stops them).
    executes: bool

    async def start(
        self,
        workflow: str,
        input: Any,
        key: str | None,
        *,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
    ) -> RunReceipt: ...

    def events(self, run_id: str, offset: str, follow: bool) -> AsyncIterator[Event]: ...

    async def list(
        self,
        workflow: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        parent: str | None = None,
        rerun_of: str | None = None,
    ) -> RunPage: ...

    async def cancel(self, run_id: str) -> RunRecord: ...

    async def rerun(self, run_id: str, from_step: str | None, key: str | None) -> RunReceipt: ...

    async def signal(self, run_id: str, name: str, data: Any, key: str | None) -> SignalReceipt: ...

    async def schedules(self) -> list[ScheduleOverview]: ...

    async def schedule(self, name: str, ticks: int, runs: int) -> ScheduleOverview: ...

    async def create_schedule(self, definition: dict[str, Any]) -> Schedule: ...

    async def change_schedule(self, name: str, action: str) -> Schedule | None: ...


class LocalRuns:
    """Runs in the local store, on an open runtime (which executes what ``start`` admits)."""

    def __init__(self, runtime: Runtime, *, executes: bool) -> None:
        self.runtime = runtime
        self.executes = executes

    async def start(
        self,
        workflow: str,
        input: Any,
        key: str | None,
        *,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
    ) -> RunReceipt:
        return await workflows.start(
            workflow, input=input, key=key, delay=delay, at=at, priority=priority, runtime=self.runtime
        )

    async def events(self, run_id: str, offset: str, follow: bool) -> AsyncIterator[Event]:
        try:
            async for event in runs.events(run_id, offset=offset, follow=follow, runtime=self.runtime):
                yield event
        except RunNotFound as exc:
            raise reworded(
                exc,
                f"{exc.message} Looked in the local store: choose another with --store or FLUE_STORE,"
                " or read from a server with --url.",
            ) from None

    async def list(
        self,
        workflow: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        parent: str | None = None,
        rerun_of: str | None = None,
    ) -> RunPage:
        return await runs.list(
            workflow=workflow,
            status=status,
            limit=limit,
            cursor=cursor,
            parent=parent,
            rerun_of=rerun_of,
            runtime=self.runtime,
        )

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel the run, executed by this process or another one on the same store."""
        try:
            record = await runs.cancel(run_id, runtime=self.runtime)
        except RunNotFound as exc:
            raise _not_in_local_store(exc) from None
        return runs.refuse_finished(record)

    async def rerun(self, run_id: str, from_step: str | None, key: str | None) -> RunReceipt:
        """Admit a re-run on this runtime, which executes it (the application's workflows are needed)."""
        try:
            return await runs.rerun(run_id, from_step=from_step, key=key, runtime=self.runtime)
        except RunNotFound as exc:
            raise _not_in_local_store(exc) from None

    async def signal(self, run_id: str, name: str, data: Any, key: str | None) -> SignalReceipt:
        try:
            return await runs.signal(run_id, name, data, key=key, runtime=self.runtime)
        except RunNotFound as exc:
            raise _not_in_local_store(exc) from None

    async def schedules(self) -> list[ScheduleOverview]:
        found = await schedules.list(runtime=self.runtime)
        return [await schedules.overview(schedule, runs=None, runtime=self.runtime) for schedule in found]

    async def schedule(self, name: str, ticks: int, runs: int) -> ScheduleOverview:
        return await schedules.overview(name, ticks=ticks, runs=runs, runtime=self.runtime)

    async def create_schedule(self, definition: dict[str, Any]) -> Schedule:
        definition = dict(definition)
        name, workflow, cron = definition.pop("name"), definition.pop("workflow"), definition.pop("cron")
        if workflow not in self.runtime.registry.names:
            raise UsageError(
                f"Creating a schedule of {workflow!r} locally needs the application's workflows: pass"
                " --app module[:attribute] (or FLUE_APP), or --url to create it on a server."
            )
        return await schedules.create(name, workflow, cron, runtime=self.runtime, **definition)

    async def change_schedule(self, name: str, action: str) -> Schedule | None:
        if action == "delete":
            await schedules.delete(name, runtime=self.runtime)
            return None
        change = schedules.pause if action == "pause" else schedules.resume
        return await change(name, runtime=self.runtime)

    async def prune(self, older_than: timedelta) -> int:
        """Delete the runs that ended more than ``older_than`` ago; how many."""
        cutoff = utc_now() - older_than
        total = 0
        while True:
            pruned = await self.runtime.target.store.prune(cutoff)
            total += pruned
            if pruned == 0:
                return total


def _not_in_local_store(exc: RunNotFound) -> FlueError:
    return reworded(exc, f"{exc.message} Looked in the local store: choose another with --store, or --url.")


class RemoteRuns:
    """Runs on a Flue server, over its HTTP API and the Durable Streams protocol."""

    executes = False

    def __init__(self, client: FlueClient, live: LiveMode) -> None:
        self.client = client
        self.live = live

    async def start(
        self,
        workflow: str,
        input: Any,
        key: str | None,
        *,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
    ) -> RunReceipt:
        return await self.client.start(workflow, input, key=key, delay=delay, at=at, priority=priority)

    def events(self, run_id: str, offset: str, follow: bool) -> AsyncIterator[Event]:
        return self.client.events(run_id, offset=offset, follow=follow, live=self.live)

    async def list(
        self,
        workflow: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        parent: str | None = None,
        rerun_of: str | None = None,
    ) -> RunPage:
        try:
            return await self.client.list(
                workflow=workflow, status=status, limit=limit, cursor=cursor, parent=parent, rerun_of=rerun_of
            )
        except FlueError as exc:
            if exc.code != "route_not_found":
                raise
            raise reworded(
                exc,
                f"{self.client.base_url} does not list runs (or not to you): the application must enable"
                " the listing (create_app(list_runs_enabled=True)) and grant it.",
            ) from None

    async def cancel(self, run_id: str) -> RunRecord:
        return await self.client.cancel(run_id)

    async def rerun(self, run_id: str, from_step: str | None, key: str | None) -> RunReceipt:
        return await self.client.rerun(run_id, from_step, key=key)

    async def signal(self, run_id: str, name: str, data: Any, key: str | None) -> SignalReceipt:
        return await self.client.signal(run_id, name, data, key=key)

    async def schedules(self) -> list[ScheduleOverview]:
        try:
            return await self.client.schedules()
        except FlueError as exc:
            raise self._no_schedules(exc) from None

    async def schedule(self, name: str, ticks: int, runs: int) -> ScheduleOverview:
        try:
            return await self.client.schedule(name, ticks=ticks, runs=runs)
        except FlueError as exc:
            raise self._no_schedules(exc) from None

    async def create_schedule(self, definition: dict[str, Any]) -> Schedule:
        try:
            return await self.client.create_schedule(definition)
        except FlueError as exc:
            raise self._no_schedules(exc) from None

    async def change_schedule(self, name: str, action: str) -> Schedule | None:
        try:
            return await self.client.change_schedule(name, action)
        except FlueError as exc:
            raise self._no_schedules(exc) from None

    def _no_schedules(self, exc: FlueError) -> FlueError:
        if exc.code != "route_not_found":
            return exc
        return reworded(
            exc,
            f"{self.client.base_url} does not manage schedules (or not for you): the application must enable"
            " them (create_app(schedules_enabled=True)) and grant it.",
        )


@asynccontextmanager
async def open_runs(
    *,
    url: str | None,
    headers: Mapping[str, str],
    live: LiveMode,
    app: str | None,
    store: str | None,
    execute: bool,
) -> AsyncIterator[Runs]:
    """The runs a command works on: a server with ``url``, else the local store. ``execute`` builds
    the local runtime from the application (``--app``), so started runs execute here; ``app`` alone
    builds it from the application too, for commands that use its workflows without starting runs."""
    if url:
        if app is not None or store is not None:
            raise UsageError("--app and --store apply to the local store; they cannot be combined with --url.")
        try:
            client = FlueClient(url, headers=headers, token=_token(headers))
        except InvalidBaseUrl:
            raise UsageError(f"--url must be an http:// or https:// URL, not {url!r}.") from None
        async with client:
            yield RemoteRuns(client, live)
        return
    if headers:
        raise UsageError("--header only applies to a server: add --url.")
    # With the application's workflows a runtime can validate what it sends (input, signal data);
    # without, it only reads. Either way it executes nothing but what it starts itself.
    runtime = app_runtime(app, store) if execute or app else reader_runtime(store)
    async with runtime:
        yield LocalRuns(runtime, executes=execute)


def _token(headers: Mapping[str, str]) -> str | None:
    if any(name.lower() == "authorization" for name in headers):
        return None
    return os.environ.get(TOKEN_ENV) or None

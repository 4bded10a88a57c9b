"""Where the commands find runs: the local store (through ``flue_core``'s API) or a Flue server.

Both give the commands the same four operations, so each command is written once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from flue_core import runs, workflows
from flue_core.cli.app import app_runtime, reader_runtime
from flue_core.cli.exits import UsageError, reworded
from flue_core.client import FlueClient, InvalidBaseUrl, LiveMode
from flue_core.errors import FlueError, RunNotFound
from flue_core.models import Event, RunPage, RunReceipt, RunRecord
from flue_core.runtime import Runtime

URL_ENV = "FLUE_URL"
TOKEN_ENV = "FLUE_TOKEN"


class Runs(Protocol):
    #: Whether runs started here execute in this process (so stopping the process stops them).
    executes: bool

    async def start(self, workflow: str, input: Any, key: str | None) -> RunReceipt: ...

    def events(self, run_id: str, offset: str, follow: bool) -> AsyncIterator[Event]: ...

    async def list(self, workflow: str | None, status: str | None, limit: int, cursor: str | None) -> RunPage: ...

    async def cancel(self, run_id: str) -> RunRecord: ...


class LocalRuns:
    """Runs in the local store, on an open runtime (which executes what ``start`` admits)."""

    def __init__(self, runtime: Runtime, *, executes: bool) -> None:
        self.runtime = runtime
        self.executes = executes

    async def start(self, workflow: str, input: Any, key: str | None) -> RunReceipt:
        return await workflows.start(workflow, input=input, key=key, runtime=self.runtime)

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

    async def list(self, workflow: str | None, status: str | None, limit: int, cursor: str | None) -> RunPage:
        return await runs.list(workflow=workflow, status=status, limit=limit, cursor=cursor, runtime=self.runtime)

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel the run, executed by this process or another one on the same store."""
        try:
            record = await runs.cancel(run_id, runtime=self.runtime)
        except RunNotFound as exc:
            raise reworded(exc, f"{exc.message} Looked in the local store: choose another with --store, or --url.") from None
        return runs.refuse_finished(record)


class RemoteRuns:
    """Runs on a Flue server, over its HTTP API and the Durable Streams protocol."""

    executes = False

    def __init__(self, client: FlueClient, live: LiveMode) -> None:
        self.client = client
        self.live = live

    async def start(self, workflow: str, input: Any, key: str | None) -> RunReceipt:
        return await self.client.start(workflow, input, key=key)

    def events(self, run_id: str, offset: str, follow: bool) -> AsyncIterator[Event]:
        return self.client.events(run_id, offset=offset, follow=follow, live=self.live)

    async def list(self, workflow: str | None, status: str | None, limit: int, cursor: str | None) -> RunPage:
        try:
            return await self.client.list(workflow=workflow, status=status, limit=limit, cursor=cursor)
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
    the local runtime from the application (``--app``), so started runs execute here."""
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
    runtime = app_runtime(app, store) if execute else reader_runtime(store)
    async with runtime:
        yield LocalRuns(runtime, executes=execute)


def _token(headers: Mapping[str, str]) -> str | None:
    if any(name.lower() == "authorization" for name in headers):
        return None
    return os.environ.get(TOKEN_ENV) or None

"""A client for a Flue HTTP server: start runs, read run records, read and follow run event streams.

::

    async with FlueClient("https://example.com/flue", token="...") as client:
        receipt = await client.start("daily-summary", {"prompt": "..."})
        async for event in client.events(receipt.run_id, follow=True):
            print(event.type, event.data)

Event streams are read with the Durable Streams protocol on ``GET /runs/{run_id}``: catch-up reads
until ``Stream-Up-To-Date``, then ``live=long-poll`` (or ``live=sse``) until the stream is closed or
``run_end`` arrives. A dropped connection is resumed from the last ``Stream-Next-Offset``, so no
event is lost or repeated. Server errors are raised as the :class:`~flue_core.errors.FlueError`
their envelope's ``code`` names.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import anyio
import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from pydantic import ValidationError

import flue_core.http.errors  # noqa: F401  (its classes are among those an envelope's code names)
from flue_core.errors import ConfigurationError, FlueError, InputNotSerializable, InvalidKey, error_classes, make_error
from flue_core.models import Event, RunPage, RunReceipt, RunRecord, RunStatus, Schedule, SignalReceipt
from flue_core.schedule_overview import ScheduleOverview
from flue_core.snapshot import NotJSON, dumps, snapshot

Headers = Mapping[str, str] | Callable[[], Mapping[str, str]]
LiveMode = Literal["long-poll", "sse"]

#: Longest a live read may stay silent: above the server's long-poll wait (30 s) and SSE heartbeat.
LIVE_READ_TIMEOUT = 75.0
#: Statuses worth retrying while following: a server restarting behind a proxy answers these.
_RETRY_STATUSES = frozenset({502, 503, 504})


class ServerUnreachable(FlueError):
    """The server could not be reached (refused, timed out, or lost for longer than ``retry_for``)."""

    code = "server_unreachable"
    status = 503


class InvalidBaseUrl(ConfigurationError):
    """``base_url`` is not an ``http://`` or ``https://`` URL."""

    code = "invalid_base_url"


class InvalidLiveMode(ConfigurationError):
    """``live`` is not ``"long-poll"`` or ``"sse"``."""

    code = "invalid_live_mode"


class UnexpectedResponse(FlueError):
    """The server answered with something that is not the Flue HTTP API (wrong URL, a proxy page...)."""

    code = "unexpected_response"
    status = 502


@dataclass(slots=True)
class _Batch:
    """One read of a run stream: its events and the protocol headers that came with them."""

    events: list[Event]
    next_offset: str
    up_to_date: bool
    closed: bool
    cursor: str | None


class FlueClient:
    """An HTTP client of one Flue server. ``base_url`` includes any mount path.

    ``headers`` are sent with every request; give a callable to have them re-resolved for every
    request, reconnections included (rotating tokens). ``token`` adds ``Authorization: Bearer``.
    While following a stream, a lost connection is retried with back-off for up to ``retry_for``
    seconds; a server that cannot be reached at the first request fails at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Headers | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidBaseUrl(
                f"base_url must be an http:// or https:// URL, not {base_url!r}.", details={"base_url": base_url}
            )
        self.base_url = base_url.rstrip("/")
        self._headers = headers
        self._token = token
        self.retry_for = retry_for
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True)
        self._reached = False  # once the server answered, lost connections are retried

    async def __aenter__(self) -> FlueClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the API ------------------------------------------------------------------------------------

    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        key: str | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
    ) -> RunReceipt:
        """``POST /workflows/{workflow}``: admit a run and return its receipt (never retried).

        ``input`` is sent as the JSON body (no body for ``None``); ``key`` as ``Idempotency-Key``;
        ``delay`` (seconds) or ``at`` (an aware datetime) as ``?delay=`` / ``?at=`` for a delayed start;
        ``priority`` as ``?priority=``.
        """
        headers = _key_headers(key)
        content = self._body(input, f"Input of workflow {workflow!r}", {"workflow": workflow})
        if content is not None:
            headers["content-type"] = "application/json"
        params = {}
        if delay is not None:
            params["delay"] = f"{delay:.6f}".rstrip("0").rstrip(".") if isinstance(delay, float) else str(delay)
        if at is not None:
            params["at"] = at.isoformat()
        if priority is not None:
            params["priority"] = str(priority)
        response = await self._send(
            "POST", f"/workflows/{quote(workflow, safe='')}", params=params or None, content=content, headers=headers
        )
        return self._parse(RunReceipt, response)

    async def signal(self, run_id: str, name: str, data: Any = None, *, key: str | None = None) -> SignalReceipt:
        """``POST /runs/{run_id}/signals/{name}``: send a signal into the run (``data`` as the JSON
        body, ``key`` as ``Idempotency-Key``, which makes retrying it safe). Raises ``RunNotFound``
        (also when unreadable), ``SignalDenied``, ``RunFinished``, ``InvalidSignal``."""
        headers = _key_headers(key)
        content = self._body(data, f"Data of signal {name!r}", {"run_id": run_id, "name": name})
        if content is not None:
            headers["content-type"] = "application/json"
        path = f"{self._run_path(run_id)}/signals/{quote(name, safe='')}"
        response = await self._send("POST", path, content=content, headers=headers, may_retry=key is not None)
        return self._parse(SignalReceipt, response)

    async def schedules(self) -> list[ScheduleOverview]:
        """``GET /schedules``: every schedule with its next ticks, where the application enables and grants it."""
        response = await self._send("GET", "/schedules", may_retry=True)
        body = self._json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("schedules"), list):
            raise UnexpectedResponse("The server's schedule listing is not {\"schedules\": [...]}.")
        return [ScheduleOverview.model_validate(item) for item in body["schedules"]]

    async def schedule(self, name: str, *, ticks: int = 5, runs: int = 5) -> ScheduleOverview:
        """``GET /schedules/{name}``: the schedule with its next ``ticks`` tick times and last ``runs``
        runs. Raises ``ScheduleNotFound``."""
        params = {"ticks": str(ticks), "runs": str(runs)}
        response = await self._send("GET", f"/schedules/{quote(name, safe='')}", params=params, may_retry=True)
        return self._parse(ScheduleOverview, response)

    async def create_schedule(self, definition: Mapping[str, Any]) -> Schedule:
        """``POST /schedules`` with ``definition`` (``name``, ``workflow``, ``cron``, ``input``,
        ``timezone``, ``catchup``, ``paused``): the schedule created, or the same one existing."""
        content = self._body(dict(definition), "The schedule", {})
        response = await self._send("POST", "/schedules", content=content, headers={"content-type": "application/json"})
        return self._parse(Schedule, response)

    async def change_schedule(self, name: str, action: str) -> Schedule | None:
        """``pause``, ``resume`` (the schedule) or ``delete`` (``None``) the schedule called ``name``."""
        path = f"/schedules/{quote(name, safe='')}"
        if action == "delete":
            await self._send("DELETE", path, may_retry=True)
            return None
        response = await self._send("POST", f"{path}/{action}", may_retry=True)
        return self._parse(Schedule, response)

    def _body(self, value: Any, what: str, details: dict[str, Any]) -> bytes | None:
        """``value`` as a JSON body (``None``: no body), checked like the server checks it first."""
        if value is None:
            return None
        try:
            return dumps(snapshot(value, "input")).encode("utf-8")
        except NotJSON as exc:
            raise InputNotSerializable(
                f"{what} is not JSON: {exc}", details={**details, "path": exc.path, "reason": exc.reason}
            ) from None

    async def get(self, run_id: str) -> RunRecord:
        """``GET /runs/{run_id}?meta``: the run's record. Raises ``RunNotFound`` (also when unreadable)."""
        response = await self._send("GET", self._run_path(run_id), params={"meta": ""}, may_retry=True)
        return self._parse(RunRecord, response)

    async def cancel(self, run_id: str) -> RunRecord:
        """``POST /runs/{run_id}/cancel``: cancel the run and return its record — ``cancelled``, or
        still going with ``cancel_requested`` while it stops. Raises ``RunNotFound`` (also when
        unreadable), ``CancelDenied``, ``RunFinished`` (it completed or failed first)."""
        response = await self._send("POST", self._run_path(run_id) + "/cancel", may_retry=True)  # idempotent
        return self._parse(RunRecord, response)

    async def rerun(self, run_id: str, from_step: str | None = None, *, key: str | None = None) -> RunReceipt:
        """``POST /runs/{run_id}/rerun``: start a new run of the finished run's workflow with its
        input, taking over its stored steps before ``from_step`` (all of them by default); the new
        run's receipt. ``key`` is sent as ``Idempotency-Key``, which makes retrying it safe. Raises
        ``RunNotFound`` (also when unreadable), ``RerunDenied``, ``RunUnfinished``, ``InvalidRerun``
        and what admission raises."""
        headers = _key_headers(key)
        content = None
        if from_step is not None:
            content = self._body({"fromStep": from_step}, "The re-run's options", {"run_id": run_id})
            headers["content-type"] = "application/json"
        path = self._run_path(run_id) + "/rerun"
        response = await self._send("POST", path, content=content, headers=headers, may_retry=key is not None)
        return self._parse(RunReceipt, response)

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        parent: str | None = None,
        rerun_of: str | None = None,
    ) -> RunPage:
        """``GET /runs``: one page of the server's run listing, newest first, where the application
        enables it (``create_app(list_runs_enabled=True)``); otherwise a 404 ``route_not_found``.
        ``parent`` keeps the child runs of that run, ``rerun_of`` its re-runs."""
        params = {
            "workflow": workflow,
            "status": status,
            "limit": limit,
            "cursor": cursor,
            "parent": parent,
            "rerunOf": rerun_of,
        }
        response = await self._send(
            "GET", "/runs", params={k: str(v) for k, v in params.items() if v is not None}, may_retry=True
        )
        return self._parse(RunPage, response)

    async def events(
        self,
        run_id: str,
        *,
        offset: str = "-1",
        follow: bool = False,
        live: LiveMode = "long-poll",
    ) -> AsyncIterator[Event]:
        """The run's events strictly after ``offset`` (``"-1"``: all; ``"now"``: only new ones).

        Without ``follow``, stops once caught up. With ``follow``, keeps reading live until the
        stream is closed (the run ended; ``run_end`` is the last event).
        """
        if live not in ("long-poll", "sse"):
            raise InvalidLiveMode(f"live must be 'long-poll' or 'sse', not {live!r}.", details={"live": live})
        path = self._run_path(run_id)
        position = offset
        while True:  # catch-up: loop until the server says we have everything there is
            batch = await self._read(path, {"offset": position})
            for event in batch.events:
                yield event
            if batch.closed or _ends(batch):
                return
            advanced = batch.next_offset != position
            position = batch.next_offset
            if batch.up_to_date or not advanced:
                break
        if not follow:
            return
        follow_live = self._follow_sse if live == "sse" else self._follow_long_poll
        async for event in follow_live(path, position, batch.cursor):
            yield event

    # -- live reads ---------------------------------------------------------------------------------

    async def _follow_long_poll(self, path: str, position: str, cursor: str | None) -> AsyncIterator[Event]:
        while True:
            params = {"offset": position, "live": "long-poll"}
            if cursor is not None:
                params["cursor"] = cursor
            batch = await self._read(path, params, timeout=LIVE_READ_TIMEOUT)
            for event in batch.events:
                yield event
            if batch.closed or _ends(batch):
                return
            position, cursor = batch.next_offset, batch.cursor or cursor

    async def _follow_sse(self, path: str, position: str, cursor: str | None) -> AsyncIterator[Event]:
        """SSE frames: ``data`` carries a JSON array of events, the ``control`` frame after it the next
        offset. A batch is yielded only once its control frame arrived, so a connection lost between
        the two resumes before that batch and nothing is delivered twice. (SSE takes no ``cursor``.)"""
        retry = _Retry(self)
        while True:
            try:
                async with self._sse(path, {"offset": position, "live": "sse"}) as frames:
                    pending: list[Event] = []
                    controls = 0
                    async for frame in frames:
                        if frame.event == "data":
                            pending.extend(self._events(_json(frame.data, "SSE data")))
                        elif frame.event == "control":
                            control = _json(frame.data, "SSE control")
                            if not isinstance(control, dict) or not isinstance(control.get("streamNextOffset"), str):
                                raise UnexpectedResponse(f"SSE control frame without streamNextOffset: {frame.data[:200]!r}")
                            position, controls = control["streamNextOffset"], controls + 1
                            batch, pending = pending, []
                            for event in batch:
                                yield event
                            if control.get("streamClosed") is True or (batch and batch[-1].type == "run_end"):
                                return
                if not controls:  # closed before saying anything: not a healthy server, back off
                    raise _Retryable("the SSE response ended without a control frame")
                retry = _Retry(self)  # a clean close after progress (servers do so every minute or so)
            except (httpx.TransportError, _Retryable) as exc:
                await retry.wait(exc)

    @asynccontextmanager
    async def _sse(self, path: str, params: dict[str, str]) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """An open ``live=sse`` response, as the events it dispatches (httpx-sse reads the event stream
        format: only CR, LF and CRLF end lines, and comments, the server's heartbeats, are no events)."""
        headers = {name: value for name, value in self._request_headers().items() if name.lower() != "accept"}
        async with aconnect_sse(
            self._http, "GET", self.base_url + path, params=params, headers=headers, timeout=LIVE_READ_TIMEOUT
        ) as source:
            response = source.response
            if response.status_code in _RETRY_STATUSES and self._reached:
                raise _Retryable(f"HTTP {response.status_code}")
            self._reached = True
            if response.status_code >= 400:
                await response.aread()
                raise error_from_response(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise UnexpectedResponse(f"GET {path}?live=sse did not answer with text/event-stream.")
            async with aclosing(source.aiter_sse()) as frames:
                yield frames

    # -- requests -----------------------------------------------------------------------------------

    async def _read(self, path: str, params: dict[str, str], *, timeout: float | None = None) -> _Batch:
        response = await self._send("GET", path, params=params, may_retry=True, timeout=timeout)
        if response.status_code == 204:
            events: list[Event] = []
        else:
            events = self._events(self._json_body(response))
        headers = response.headers
        next_offset = headers.get("stream-next-offset")
        if not next_offset:
            raise UnexpectedResponse(
                f"GET {path} answered without a Stream-Next-Offset header; is {self.base_url} a Flue server?"
            )
        return _Batch(
            events=events,
            next_offset=next_offset,
            up_to_date=headers.get("stream-up-to-date", "").lower() == "true",
            closed=headers.get("stream-closed", "").lower() == "true",
            cursor=headers.get("stream-cursor"),
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        may_retry: bool = False,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; raise the server's error for a non-2xx answer. With ``may_retry`` (reads
        only), a lost connection or a 502/503/504 is retried with back-off once the server has
        answered before."""
        retry = _Retry(self)
        while True:
            try:
                request = self._http.build_request(
                    method,
                    self.base_url + path,
                    params=params,
                    content=content,
                    headers={**self._request_headers(), **(headers or {})},
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = await self._http.send(request)
                if may_retry and response.status_code in _RETRY_STATUSES and self._reached:
                    raise _Retryable(f"HTTP {response.status_code}")
            except (httpx.TransportError, _Retryable) as exc:
                if not may_retry:
                    raise self._unreachable(exc) from exc
                await retry.wait(exc)
                continue
            self._reached = True
            if response.status_code >= 400:
                raise error_from_response(response)
            return response

    def _unreachable(self, exc: Exception) -> ServerUnreachable:
        return ServerUnreachable(
            f"Cannot reach {self.base_url}: {exc or type(exc).__name__}",
            details={"url": self.base_url, "reason": type(exc).__name__},
        )

    def _request_headers(self) -> dict[str, str]:
        headers = dict(self._headers() if callable(self._headers) else self._headers or {})
        if self._token is not None and not any(name.lower() == "authorization" for name in headers):
            headers["authorization"] = f"Bearer {self._token}"
        return headers

    # -- decoding -----------------------------------------------------------------------------------

    def _run_path(self, run_id: str) -> str:
        return f"/runs/{quote(run_id, safe='')}"

    def _json_body(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url} answered {response.status_code} without JSON.",
                details={"status": response.status_code},
            ) from None

    def _events(self, body: Any) -> list[Event]:
        if not isinstance(body, list):
            raise UnexpectedResponse("A run stream read did not return a JSON array of events.")
        try:
            return [Event.model_validate(item) for item in body]
        except ValidationError as exc:
            raise UnexpectedResponse(f"A run stream returned something that is not a Flue event: {exc}") from None

    def _parse(self, model: type[Any], response: httpx.Response) -> Any:
        try:
            return model.model_validate(self._json_body(response))
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url} did not return a {model.__name__}: {exc}"
            ) from None


class _Retry:
    """Back-off for one stretch of failures: 0.1 s, 0.2 s, 0.4 s... at most 2 s apart, for at most the
    client's ``retry_for`` seconds. A server never reached is not retried at all (fail fast)."""

    def __init__(self, client: FlueClient) -> None:
        self._client = client
        self._started: float | None = None
        self._attempts = 0

    async def wait(self, exc: Exception) -> None:
        client = self._client
        now = anyio.current_time()
        if self._started is None:
            self._started = now
        left = client.retry_for - (now - self._started)
        if not client._reached or left <= 0:
            raise client._unreachable(exc) from exc
        await anyio.sleep(min(0.1 * 2**self._attempts, 2.0, left))
        self._attempts += 1


class _Retryable(Exception):
    """An answer that means "try again shortly" (a proxy in front of a restarting server)."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UnexpectedResponse(f"{what} is not JSON: {text[:200]!r}") from None


def _ends(batch: _Batch) -> bool:
    return bool(batch.events) and batch.events[-1].type == "run_end"


def error_from_response(response: httpx.Response) -> FlueError:
    """The :class:`FlueError` a non-2xx answer stands for: the class its envelope's ``code`` names
    (a plain ``FlueError`` carrying that code when it is not one of ours), with the response's status."""
    status = response.status_code
    code, message, details = f"http_{status}", f"HTTP {status} from {response.request.url}", None
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
        details = body.get("details") if isinstance(body.get("details"), dict) else None
    except (ValueError, KeyError, TypeError):
        pass
    return make_error(error_classes().get(code, FlueError), message, details=details, code=code, status=status)


def _key_headers(key: str | None) -> dict[str, Any]:
    """``key`` as the ``Idempotency-Key`` header, in UTF-8 (the server reads it so), or no header.
    A key a header cannot carry (not text, a lone surrogate, a line break or NUL) is :class:`InvalidKey`
    here, before anything is sent."""
    if key is None:
        return {}
    if not isinstance(key, str) or any(c in key for c in "\r\n\0"):
        raise InvalidKey(f"An Idempotency-Key must be text without line breaks or NUL, not {key!r}.")
    try:
        return {"idempotency-key": key.encode("utf-8")}
    except UnicodeEncodeError:
        raise InvalidKey("An Idempotency-Key must be valid Unicode text (it holds a lone surrogate).") from None

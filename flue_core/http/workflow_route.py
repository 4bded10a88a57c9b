"""``POST /workflows/{name}``: admit a run over HTTP through the one admission pipeline.

Checks run in this order, so each answer discloses no more than the one before it:

1. method: anything but ``POST`` is 405 with ``Allow: POST``;
2. query: only ``wait=result``, ``delay=<seconds>`` and ``at=<RFC 3339 time>`` (a delayed start)
   and ``priority=<-100..100>`` are understood; anything else is 400 ``invalid_query`` (a priority
   that is not an integer in range: 400 ``invalid_priority``);
3. workflow: unknown and not exposed (``http=False``) answer the same 404 ``workflow_not_found``;
4. the workflow's route middleware (authentication; may reject before the body is read);
5. body: 415 for a non-JSON content type, 413 past ``max_body_size`` (while reading), 400 bad JSON;
6. :func:`flue_core.admission.admit` with ``source="http"``: 422 invalid input (no run), 400
   ``invalid_schedule`` for a delay or time out of range, 403 / 429 refused by a policy, 409
   idempotency key conflict, 503 scheduling failed.

Detached (default): 202, the receipt, ``Location: <stream url>``. With ``?wait=result``: 200 with the
result once the run completed; the run's error (424 ``run_failed``, 409 ``run_cancelled``) otherwise;
if the app's ``wait_timeout`` passes first, the detached 202 answer, since the run is still going.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import arguments, runs
from flue_core.admission import admit
from flue_core.errors import FlueError, InvalidPriority, RunCancelled, RunFailed, RunNotFinished, WorkflowNotFound
from flue_core.flow.limits import MAX_PRIORITY, MIN_PRIORITY
from flue_core.http.body import read_json
from flue_core.http.config import HttpConfig, stream_path
from flue_core.http.envelope import error_response
from flue_core.http.errors import MethodNotAllowed
from flue_core.http.query import choice, idempotency_key, parse_query
from flue_core.http.route_middleware import through_middleware
from flue_core.models import RunReceipt, RunRecord, RunStatus
from flue_core.snapshot import dumps

WAIT_MODES = ("result",)


async def post_workflow(config: HttpConfig, request: Request) -> Response:
    if request.method != "POST":
        raise MethodNotAllowed(request.method, ["POST"])
    params = parse_query(request, ["wait", "delay", "at", "priority"])
    wait = choice(params, "wait", WAIT_MODES) is not None
    delay = None if "delay" not in params else arguments.seconds_text("delay", params["delay"])
    at = None if "at" not in params else arguments.timestamp_text("at", params["at"])
    priority = None if "priority" not in params else priority_text(params["priority"])
    name = request.path_params["name"]
    runtime = config.open_runtime()
    wf = runtime.registry.get(name)
    if wf is None or not wf.http:
        # One answer for both, so names of internal workflows cannot be discovered.
        raise WorkflowNotFound(f"No workflow named {name!r} is exposed over HTTP.", details={"workflow": name})

    async def admit_request(request: Request) -> Response:
        try:
            input = await read_json(request, config.max_body_size)
            receipt = await admit(
                runtime,
                wf,
                input,
                key=idempotency_key(request),
                source="http",
                principal=request_principal(request),
                at=at,
                delay=delay,
                priority=priority,
            )
            stream_url = stream_path(request, receipt.run_id)
            if wait:
                receipt = receipt.model_copy(update={"stream_url": stream_url})
                return await _wait_for_result(config, request, receipt)
            return accepted_run(receipt.run_id, receipt.workflow, stream_url)
        except FlueError as exc:  # an envelope, so route middleware sees (and may edit) a response
            return error_response(exc)

    return await through_middleware(wf, request, admit_request)


def priority_text(text: str) -> int:
    """A query string's priority: an integer such as ``10`` or ``-5`` (its range is checked by admission)."""
    try:
        if not text.lstrip("-").isdigit() or not text.isascii() or len(text) > 4:
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise InvalidPriority(
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, not {text[:20]!r}.",
            details={"parameter": "priority"},
        ) from None


def request_principal(request: Request) -> Any:
    """``request.state.principal``, or ``None``: read from the dict ``request.state`` keeps it in
    (``scope["state"]``), without the ``AttributeError`` Starlette raises for a name never set."""
    state = request.scope.get("state")
    return None if state is None else state.get("principal")


def accepted(receipt: RunReceipt) -> Response:
    """202 with the receipt and ``Location: <its stream url>``: a run admitted, not yet run."""
    return accepted_run(receipt.run_id, receipt.workflow, receipt.stream_url)


def accepted_run(run_id: str, workflow: str, stream_url: str) -> Response:
    """:func:`accepted` of a receipt's fields, without building the receipt (every admission answers it)."""
    # The bytes JSONResponse would send of the receipt (compact, UTF-8, its fields by alias, in order),
    # from the one encoder built once.
    body = dumps({"runId": run_id, "workflow": workflow, "streamUrl": stream_url, "offset": "-1"}).encode()
    return Response(body, status_code=202, media_type="application/json", headers={"Location": stream_url})


async def _wait_for_result(config: HttpConfig, request: Request, receipt: RunReceipt) -> Response:
    record = None
    async with anyio.create_task_group() as waiting:
        # A client that hangs up stops the wait (not the run): nobody is left to answer.
        waiting.start_soon(cancel_on_disconnect, request, waiting.cancel_scope)
        try:
            record = await runs.wait(receipt.run_id, timeout=config.wait_timeout, runtime=config.runtime)
        except RunNotFinished:
            pass
        waiting.cancel_scope.cancel()
    if record is None:  # still going after wait_timeout (or the client left): the detached answer
        return accepted(receipt)
    if record.status == RunStatus.COMPLETED:
        body: dict[str, Any] = {**receipt.model_dump(mode="json"), "status": record.status.value, "result": record.result}
        return JSONResponse(body)
    return error_response(run_outcome_error(record, receipt))


async def cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` once the client hangs up (a wait it asked for has nobody left to answer)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def run_outcome_error(record: RunRecord, receipt: RunReceipt) -> FlueError:
    """The error a waiting client gets for a run that did not complete. The run's error travels without
    its traceback: that stays in the record, for readers the application authorised."""
    where = {"run_id": record.run_id, "workflow": record.workflow, "stream_url": receipt.stream_url}
    if record.status == RunStatus.CANCELLED:
        return RunCancelled(f"Run {record.run_id} was cancelled.", details=where)
    error = record.error
    run_error = None if error is None else error.model_dump(mode="json", exclude_none=True, exclude={"traceback"})
    return RunFailed(
        f"Run {record.run_id} failed: {error.message if error else 'unknown error'}",
        details={**where, "error": run_error},
    )

"""``POST /runs/{run_id}/cancel``: cancel a run from outside the process that executes it.

Checks run in this order, so each answer discloses no more than the one before it:

1. method: anything but ``POST`` is 405 with ``Allow: POST``;
2. query and body: no parameter is understood, any is 400 ``invalid_query``; nor is a body, any
   is 400 ``unexpected_body``;
3. reading: an unknown run and a run the caller may not read get the same 404 ``run_not_found``;
4. cancelling: a reader not granted cancelling gets 403 ``run_cancel_denied`` (closed by default:
   ``authorize_run_cancel=`` of :func:`~flue_core.http.create_app`, or ``flue_authorize_run_cancel``);
5. the cancel itself (:func:`flue_core.runs.cancel`), waiting up to :data:`CANCEL_WAIT` seconds for
   the run to end (a client that hangs up stops the wait, not the cancel).

Answers, each with the run's record as its body (the ``?meta`` form): 200 once the run ended
``cancelled`` (also when it had been already: the request is idempotent); 202 while the cancel is
requested but the run is still going (it is cancelled at its next await, wherever it executes);
409 ``run_finished`` when the run ended otherwise (completed or failed) — nothing left to cancel.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import runs
from flue_core.errors import CancelDenied
from flue_core.http.authorization import may_cancel_run, readable_run
from flue_core.http.config import HttpConfig
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.errors import MethodNotAllowed, UnexpectedBody
from flue_core.http.query import parse_query
from flue_core.http.workflow_route import cancel_on_disconnect
from flue_core.models import RunRecord

#: Seconds ``POST /runs/{id}/cancel`` waits for a running run to end before answering 202.
CANCEL_WAIT = 5.0


async def cancel_run(config: HttpConfig, request: Request) -> Response:
    if request.method != "POST":  # before any lookup: says nothing about the run
        raise MethodNotAllowed(request.method, ["POST"])
    parse_query(request, ())
    async for chunk in request.stream():  # the first byte is enough to refuse; nothing more is read
        if chunk:
            raise UnexpectedBody("POST /runs/{run_id}/cancel takes no body: send the request without one.")
    record = await readable_run(config, request)
    runtime, run_id = config.runtime, record.run_id
    if not await may_cancel_run(config.authorize_run_cancel, runtime.pm.hook.flue_authorize_run_cancel, request, record):
        raise CancelDenied(f"You may not cancel run {run_id}.", details={"run_id": run_id})
    if not record.finished:
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(cancel_on_disconnect, request, waiting.cancel_scope)
            record = await runs.cancel(run_id, wait_for=CANCEL_WAIT, runtime=runtime)
            waiting.cancel_scope.cancel()
    return answer(record)


def answer(record: RunRecord) -> Response:
    """200 for a cancelled run, 202 for one still going, :class:`RunFinished` otherwise."""
    runs.refuse_finished(record)
    status = 200 if record.finished else 202
    return JSONResponse(record.model_dump(mode="json"), status_code=status, headers=PRIVATE_HEADERS)

"""``POST /runs/{run_id}/rerun``: start a new run of a finished run's workflow with its input,
taking over the steps it stored (see :mod:`flue_core.rerun`).

Checks run in this order, so each answer discloses no more than the one before it:

1. method: anything but ``POST`` is 405 with ``Allow: POST``;
2. query: no parameter is understood; any is 400 ``invalid_query``;
3. reading: an unknown run and a run the caller may not read get the same 404 ``run_not_found``;
4. re-running: a reader not granted re-running gets 403 ``run_rerun_denied`` (closed by default:
   ``authorize_run_rerun=`` of :func:`~flue_core.http.create_app`, or ``flue_authorize_run_rerun``);
5. body: none, or a JSON object ``{"fromStep": "<step>"}``: 415, 413, 400 as for a start, and 400
   ``invalid_rerun`` for any other JSON;
6. the re-run, admitted with ``source="rerun"`` and the ``Idempotency-Key`` header as its key:
   409 ``run_unfinished`` for a run that has not ended, 400 ``invalid_rerun`` for a ``fromStep`` the
   run did not store, then what admission answers (422 invalid input, 403 / 429 refused by a
   policy, 409 idempotency key conflict, 503 scheduling failed).

Answers as ``POST /workflows/{name}`` does, detached: 202, the new run's receipt, ``Location: <its
stream url>``. A retry with the same key answers the same receipt, and no second run is made.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flue_core.errors import InvalidRerun, RerunDenied
from flue_core.http.authorization import may_rerun_run, readable_run
from flue_core.http.body import read_json
from flue_core.http.config import HttpConfig, stream_path
from flue_core.http.errors import MethodNotAllowed
from flue_core.http.query import idempotency_key, parse_query
from flue_core.http.workflow_route import accepted, request_principal
from flue_core.rerun import rerun


async def rerun_run(config: HttpConfig, request: Request) -> Response:
    if request.method != "POST":  # before any lookup: says nothing about the run
        raise MethodNotAllowed(request.method, ["POST"])
    parse_query(request, ())
    record = await readable_run(config, request)
    runtime, run_id = config.runtime, record.run_id
    if not await may_rerun_run(config.authorize_run_rerun, runtime.pm.hook.flue_authorize_run_rerun, request, record):
        raise RerunDenied(f"You may not re-run run {run_id}.", details={"run_id": run_id})
    from_step = rerun_options(await read_json(request, config.max_body_size, "the re-run's options"))
    key = idempotency_key(request)
    receipt = await rerun(runtime, run_id, from_step=from_step, key=key, principal=request_principal(request))
    return accepted(receipt.model_copy(update={"stream_url": stream_path(request, receipt.run_id)}))


def rerun_options(body: Any) -> str | None:
    """``fromStep`` of a re-run's body ``{"fromStep": ...}`` (``None`` without a body or without the
    field), for this route and the dashboard's re-run button; :func:`flue_core.rerun.rerun` checks
    the value itself."""
    if body is None:
        return None
    if not isinstance(body, dict) or set(body) - {"fromStep"}:
        raise InvalidRerun(
            'Send the re-run\'s options as {"fromStep": "<step name>"}, or no body to take over every stored step.',
            details={"fields": sorted(body) if isinstance(body, dict) else None},
        )
    return body.get("fromStep")

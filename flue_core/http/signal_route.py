"""``POST /runs/{run_id}/signals/{name}``: send a signal into a run (see ``runs.signal``).

Checks run in this order, so each answer discloses no more than the one before it:

1. method: anything but ``POST`` is 405 with ``Allow: POST``;
2. query: no parameter is understood; any is 400 ``invalid_query``;
3. reading: an unknown run and a run the caller may not read get the same 404 ``run_not_found``;
4. signalling: a reader not granted signalling gets 403 ``run_signal_denied`` (closed by default:
   ``authorize_run_signal=`` of :func:`~flue_core.http.create_app`, or ``flue_authorize_run_signal``);
5. body: the signal's data as JSON (an empty body is ``null``): 415, 413, 400 as for a start, and
   422 ``invalid_signal`` for JSON a run cannot carry (too deep, not valid Unicode...);
6. :func:`flue_core.runs.signal`, with the ``Idempotency-Key`` header as its key: 422
   ``invalid_signal`` for a bad name or data (checked against the model the workflow declares),
   409 ``run_finished`` for an ended run, 409 ``idempotency_key_conflict``, 400 ``invalid_key``.

Answers 202 with the :class:`~flue_core.models.SignalReceipt` for a signal stored, 200 with the first
signal's receipt (``duplicate: true``) for a repeat of an idempotency key.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import runs
from flue_core.errors import InputNotSerializable, InvalidSignal, SignalDenied
from flue_core.http.authorization import may_signal_run, readable_run
from flue_core.http.body import read_json
from flue_core.http.config import HttpConfig
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.errors import MethodNotAllowed
from flue_core.http.query import idempotency_key, parse_query


async def signal_run(config: HttpConfig, request: Request) -> Response:
    if request.method != "POST":  # before any lookup: says nothing about the run
        raise MethodNotAllowed(request.method, ["POST"])
    parse_query(request, ())
    record = await readable_run(config, request)
    runtime, run_id = config.runtime, record.run_id
    if not await may_signal_run(config.authorize_run_signal, runtime.pm.hook.flue_authorize_run_signal, request, record):
        raise SignalDenied(f"You may not signal run {run_id}.", details={"run_id": run_id})
    try:
        data = await read_json(request, config.max_body_size, "the signal's data")
    except InputNotSerializable as exc:  # the signal's own code, like every other refusal of its data
        raise InvalidSignal(exc.message, details={"name": request.path_params["name"], **(exc.details or {})}) from None
    receipt = await runs.signal(
        run_id, request.path_params["name"], data, key=idempotency_key(request), runtime=runtime
    )
    status = 200 if receipt.duplicate else 202
    return JSONResponse(receipt.model_dump(mode="json"), status_code=status, headers=PRIVATE_HEADERS)

"""``GET|HEAD /runs/{run_id}`` (record with ``?meta``, else the event stream) and ``GET /runs`` (listing).

Run reads are closed unless granted (:mod:`flue_core.http.authorization`). An unknown run and a run the
caller may not read get the same 404 ``run_not_found``, so a run id cannot be probed for existence.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flue_core import runs
from flue_core.http.authorization import may_list_runs, readable_run
from flue_core.http.config import HttpConfig
from flue_core.http.envelope import PRIVATE_HEADERS
from flue_core.http.errors import MethodNotAllowed
from flue_core.http.query import parse_query
from flue_core.streams import serve_run_stream
from flue_core.http.error_handling import route_not_found

LIST_PARAMETERS = ("workflow", "status", "limit", "cursor", "parent", "rerunOf")
DEFAULT_LIST_LIMIT = 50


async def read_run(config: HttpConfig, request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):  # before any lookup: says nothing about the run
        raise MethodNotAllowed(request.method, ["GET", "HEAD"])
    record = await readable_run(config, request)
    runtime, run_id = config.runtime, record.run_id
    if request.method == "GET" and "meta" in request.query_params:
        return JSONResponse(record.model_dump(mode="json"), headers=PRIVATE_HEADERS)
    return await serve_run_stream(request, runtime, run_id, config.stream_options)


async def list_runs(config: HttpConfig, request: Request) -> Response:
    runtime = config.open_runtime()
    # Authorised before anything else: a refused caller cannot tell the listing is switched on.
    if not await may_list_runs(config.authorize_run_list, runtime.pm.hook.flue_authorize_run_list, request):
        return route_not_found(request)
    if request.method != "GET":
        raise MethodNotAllowed(request.method, ["GET"])
    params = parse_query(request, LIST_PARAMETERS)
    page = await runs.list(
        workflow=params.get("workflow"),
        status=params.get("status"),
        limit=params.get("limit", DEFAULT_LIST_LIMIT),  # text, parsed by the API's own strict parser
        cursor=params.get("cursor"),
        parent=params.get("parent"),
        rerun_of=params.get("rerunOf"),
        runtime=runtime,
    )
    return JSONResponse(page.model_dump(mode="json"), headers=PRIVATE_HEADERS)

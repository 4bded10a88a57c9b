"""``POST /workflows/{name}`` end to end: uvicorn on 127.0.0.1, httpx as the client, memory and SQLite."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flue_core import RunContext, Runtime, hookimpl, runs, workflow, workflows
from flue_core.errors import AdmissionDenied, FlueError, RateLimited
from flue_core.http import create_app, error_response, serve
from flue_node_like import LocalTarget
from http_served import STORES, error_of, local_target
from http_served import served as serve_app

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    item: str
    quantity: int = 1


class Unauthenticated(FlueError):
    code = "unauthenticated"
    status = 401


async def require_token(request: Request, call_next: Callable[[Request], Any]) -> Response:
    if request.headers.get("authorization") != "Bearer good":
        return error_response(Unauthenticated("Send Authorization: Bearer <token>."))
    request.state.principal = "alice"
    return await call_next(request)


async def stamp(request: Request, call_next: Callable[[Request], Any]) -> Response:
    response = await call_next(request)
    response.headers["x-stamped"] = "yes"
    return response


GATES: dict[str, anyio.Event] = {}


@workflow(name="place-order", http=True)
async def place_order(ctx: RunContext, input: Order) -> dict[str, Any]:
    return {"placed": input.item, "quantity": input.quantity}


@workflow(name="ping", http=True)
async def ping(ctx: RunContext) -> str:
    return "pong"


@workflow(name="explode", http=True)
async def explode(ctx: RunContext) -> None:
    raise ValueError("the warehouse is on fire")


@workflow(name="hold", http=True)
async def hold(ctx: RunContext, input: dict) -> str:
    await GATES[input["gate"]].wait()
    return "released"


@workflow(name="guarded", http=True, middleware=[stamp, require_token])
async def guarded(ctx: RunContext, input: Order) -> str:
    return input.item


@workflow(name="internal-cleanup")
async def internal_cleanup(ctx: RunContext) -> str:
    return "not over HTTP"


WORKFLOWS = [place_order, ping, explode, hold, guarded, internal_cleanup]


@pytest.fixture(params=STORES)
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LocalTarget]:
    return lambda: local_target(request.param, tmp_path, request)


@pytest.fixture
def served(make_target: Callable[[], LocalTarget]) -> Callable[..., Any]:
    """``async with served(**create_app_options) as (runtime, client)``."""
    return partial(serve_app, WORKFLOWS, make_target)


async def run_count(runtime: Runtime) -> int:
    return len((await runs.list(runtime=runtime)).runs)



# -- admission ---------------------------------------------------------------------------------------


async def test_post_admits_a_run_and_answers_202_with_receipt_and_location(served):
    async with served() as (runtime, client):
        response = await client.post("/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 202
        receipt = response.json()
        assert set(receipt) == {"runId", "workflow", "streamUrl", "offset"}
        assert receipt["workflow"] == "place-order" and receipt["offset"] == "-1"
        assert receipt["streamUrl"] == f"/runs/{receipt['runId']}"
        assert response.headers["location"] == receipt["streamUrl"]
        assert await runs.result(receipt["runId"], timeout=5, runtime=runtime) == {"placed": "tea", "quantity": 1}


async def test_admission_goes_through_the_pipeline_with_source_http(served):
    seen = []

    class Policy:
        @hookimpl
        async def flue_check_admission(self, request):
            seen.append((request.workflow.name, request.input, request.source, request.key))

    async with served(plugins=[Policy()]) as (_, client):
        await client.post("/workflows/place-order", json={"item": "tea"}, headers={"Idempotency-Key": "k1"})
    assert seen == [("place-order", {"item": "tea", "quantity": 1}, "http", "k1")]


async def test_empty_body_admits_a_workflow_without_input(served):
    async with served() as (runtime, client):
        response = await client.post("/workflows/ping")
        assert response.status_code == 202
        assert await runs.result(response.json()["runId"], timeout=5, runtime=runtime) == "pong"


async def test_wait_result_answers_200_with_the_result(served):
    async with served() as (_, client):
        response = await client.post("/workflows/place-order?wait=result", json={"item": "tea", "quantity": 2})
        assert response.status_code == 200
        body = response.json()
        assert body["result"] == {"placed": "tea", "quantity": 2}
        assert body["status"] == "completed"
        assert body["streamUrl"] == f"/runs/{body['runId']}"
        assert "location" not in response.headers


async def test_wait_result_of_a_failed_run_answers_424_with_the_run_error_and_no_traceback(served):
    async with served() as (runtime, client):
        response = await client.post("/workflows/explode?wait=result")
        assert response.status_code == 424
        error = error_of(response)
        assert error["code"] == "run_failed"
        assert error["details"]["error"] == {
            "code": "workflow_error",
            "message": "the warehouse is on fire",
            "type": "ValueError",
        }
        record = await runs.get(error["details"]["run_id"], runtime=runtime)
        assert record.status == "failed"


async def test_wait_result_past_the_wait_timeout_answers_202_with_the_receipt(served):
    GATES["slow"] = anyio.Event()
    try:
        async with served(wait_timeout=0.2) as (runtime, client):
            response = await client.post("/workflows/hold?wait=result", json={"gate": "slow"})
            assert response.status_code == 202
            run_id = response.json()["runId"]
            assert response.headers["location"] == f"/runs/{run_id}"
            assert (await runs.get(run_id, runtime=runtime)).status == "running"
            GATES["slow"].set()
            assert await runs.result(run_id, timeout=5, runtime=runtime) == "released"
    finally:
        GATES.pop("slow").set()


async def test_idempotency_key_header_returns_the_same_run(served):
    async with served() as (runtime, client):
        headers = {"Idempotency-Key": "order-42"}
        first = await client.post("/workflows/place-order", json={"item": "tea"}, headers=headers)
        second = await client.post("/workflows/place-order", json={"item": "tea"}, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        assert (await runs.get(first.json()["runId"], runtime=runtime)).key == "order-42"
        assert await run_count(runtime) == 1


async def test_a_non_ascii_key_is_read_as_utf8_the_same_key_as_from_python(served):
    async with served() as (runtime, client):
        over_http = await client.post(
            "/workflows/place-order", json={"item": "tea"}, headers={"Idempotency-Key": "заказ-42".encode()}
        )
        assert over_http.status_code == 202
        assert (await runs.get(over_http.json()["runId"], runtime=runtime)).key == "заказ-42"
        from_python = await workflows.start("place-order", input={"item": "tea"}, key="заказ-42", runtime=runtime)
        assert from_python.run_id == over_http.json()["runId"]


async def test_idempotency_key_reused_with_other_input_is_409(served):
    async with served() as (runtime, client):
        headers = {"Idempotency-Key": "order-42"}
        await client.post("/workflows/place-order", json={"item": "tea"}, headers=headers)
        response = await client.post("/workflows/place-order", json={"item": "coffee"}, headers=headers)
        assert response.status_code == 409
        assert error_of(response)["code"] == "idempotency_key_conflict"
        assert await run_count(runtime) == 1


# -- errors ------------------------------------------------------------------------------------------

JSON = {"content-type": "application/json"}
REJECTED = [
    pytest.param("/workflows/place-order", {"content": b'{"item": ', "headers": JSON}, 400, "invalid_json", id="malformed-json"),
    pytest.param("/workflows/hold", {"content": b'{"gate": NaN}', "headers": JSON}, 400, "invalid_json", id="nan-is-not-json"),
    pytest.param("/workflows/place-order?wait=results", {"json": {"item": "tea"}}, 400, "invalid_query", id="wait-results"),
    pytest.param("/workflows/place-order?mode=sync", {"json": {"item": "tea"}}, 400, "invalid_query", id="unknown-parameter"),
    pytest.param("/workflows/place-order?wait=result&wait=result", {"json": {"item": "tea"}}, 400, "invalid_query", id="repeated-parameter"),
    pytest.param("/workflows/place-order", {"json": {"item": "tea"}, "headers": {"Idempotency-Key": ""}}, 400, "invalid_key", id="empty-key"),
    pytest.param("/workflows/place-order", {"json": {"item": "tea"}, "headers": {"Idempotency-Key": b"\xff\xfe"}}, 400, "invalid_key", id="key-not-utf8"),
    pytest.param("/workflows/place-order", {"json": {"item": "tea"}, "headers": [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]}, 400, "invalid_key", id="two-keys"),
    pytest.param("/workflows/place-order", {"content": b'{"item": "tea"}', "headers": {**JSON, "content-encoding": "gzip"}}, 415, "unsupported_media_type", id="compressed"),
    pytest.param("/workflows/place-order", {"json": {"item": "t" * 100}}, 413, "body_too_large", id="over-the-limit"),
    pytest.param("/workflows/place-order", {"content": b"item=tea", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type", id="text-plain"),
    pytest.param("/workflows/place-order", {"content": b'{"item": "tea"}'}, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param("/workflows/place-order", {"json": {"quantity": "many"}}, 422, "invalid_input", id="invalid-input"),
    pytest.param("/workflows/ping", {"json": {"x": 1}}, 422, "unexpected_input", id="input-to-no-input-workflow"),
]


@pytest.mark.parametrize(("path", "send", "status", "code"), REJECTED)
async def test_a_rejected_request_answers_its_error_and_creates_no_run(served, path, send, status, code):
    async with served(max_body_size=64) as (runtime, client):
        response = await client.post(path, **send)
        assert (response.status_code, error_of(response)["code"]) == (status, code)
        assert await run_count(runtime) == 0


async def test_unknown_wait_mode_names_the_allowed_one(served):
    async with served() as (_, client):
        response = await client.post("/workflows/place-order?wait=results", json={"item": "tea"})
        assert error_of(response)["details"] == {"parameter": "wait", "value": "results", "allowed": ["result"]}


async def test_unknown_query_parameter_is_named(served):
    async with served() as (_, client):
        response = await client.post("/workflows/place-order?mode=sync", json={"item": "tea"})
        assert error_of(response)["details"]["unknown"] == ["mode"]


async def test_unknown_and_unexposed_workflows_get_identical_404s(served):
    async with served() as (runtime, client):
        unknown = await client.post("/workflows/no-such-thing", json={})
        unexposed = await client.post("/workflows/internal-cleanup", json={})
        assert unknown.status_code == unexposed.status_code == 404
        assert error_of(unknown)["code"] == "workflow_not_found"
        normalise = lambda r: r.text.replace("no-such-thing", "NAME").replace("internal-cleanup", "NAME")  # noqa: E731
        assert normalise(unknown) == normalise(unexposed)
        assert dict(unknown.headers).keys() == dict(unexposed.headers).keys()
        assert await run_count(runtime) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
async def test_other_methods_get_405_with_allow_post(served, method):
    async with served() as (_, client):
        response = await client.request(method, "/workflows/place-order")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        if method != "HEAD":
            assert error_of(response)["code"] == "method_not_allowed"


async def test_body_over_the_limit_is_refused_while_it_is_still_being_sent(served):
    async with served(max_body_size=64) as (runtime, client):
        host, port = client.base_url.host, client.base_url.port
        async with await anyio.connect_tcp(host, port) as sock:
            # Chunked, with no length announced; the body is never finished by this client.
            await sock.send(
                b"POST /workflows/place-order HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + b"64\r\n" + b'{"item": "' + b"t" * 90 + b"\r\n"
            )
            received = b""
            with anyio.fail_after(5):
                while b"\r\n\r\n" not in received:
                    received += await sock.receive()
        assert received.startswith(b"HTTP/1.1 413 ")
        assert await run_count(runtime) == 0


async def test_json_content_type_with_parameters_and_suffix_is_accepted(served):
    async with served() as (_, client):
        for content_type in ("application/json; charset=utf-8", "application/vnd.orders+json"):
            response = await client.post(
                "/workflows/place-order", content=b'{"item": "tea"}', headers={"content-type": content_type}
            )
            assert response.status_code == 202, content_type


async def test_invalid_input_lists_each_problem(served):
    async with served() as (_, client):
        response = await client.post("/workflows/place-order", json={"quantity": "many"})
        assert [e["loc"] for e in error_of(response)["details"]["errors"]] == [["item"], ["quantity"]]


async def test_body_over_the_limit_says_what_the_limit_is(served):
    async with served(max_body_size=64) as (_, client):
        response = await client.post("/workflows/place-order", json={"item": "t" * 100})
        assert error_of(response) == {
            "code": "body_too_large",
            "message": "The body is larger than 64 bytes.",
            "details": {"max_body_size": 64},
        }


class Refuse:
    def __init__(self, error: FlueError) -> None:
        self.error = error

    @hookimpl
    async def flue_check_admission(self, request):
        raise self.error


async def test_admission_policy_denial_is_403_and_creates_no_run(served):
    async with served(plugins=[Refuse(AdmissionDenied("Orders are closed."))]) as (runtime, client):
        response = await client.post("/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 403
        assert error_of(response) == {"code": "admission_denied", "message": "Orders are closed."}
        assert await run_count(runtime) == 0


async def test_rate_limited_admission_is_429(served):
    async with served(plugins=[Refuse(RateLimited("Slow down."))]) as (_, client):
        response = await client.post("/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 429
        assert error_of(response)["code"] == "rate_limited"


class CannotSchedule:
    @hookimpl(tryfirst=True)
    def flue_schedule_run(self, run, runtime):
        raise RuntimeError("executor pool is gone")


async def test_scheduling_failure_is_503_and_the_run_is_ended_failed(served):
    async with served(plugins=[CannotSchedule()]) as (runtime, client):
        response = await client.post("/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 503
        error = error_of(response)
        assert error["code"] == "scheduling_failed"
        assert (await runs.get(error["details"]["run_id"], runtime=runtime)).status == "failed"


async def test_unexpected_exception_is_500_internal_error_that_reveals_nothing_and_is_logged(served, caplog):
    async with served(plugins=[Refuse(RuntimeError("db password is hunter2"))]) as (_, client):
        with caplog.at_level(logging.ERROR, logger="flue.http"):
            response = await client.post("/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 500
        assert error_of(response) == {"code": "internal_error", "message": "An internal error occurred."}
        assert "hunter2" not in response.text
        assert any("hunter2" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_unknown_route_is_404_route_not_found(served):
    async with served() as (_, client):
        response = await client.get("/nothing/here")
        assert response.status_code == 404
        assert error_of(response) == {"code": "route_not_found", "message": "No route matches GET /nothing/here."}


@pytest.mark.parametrize("method, path", [("POST", "/workflows/ping/"), ("GET", "/runs/run_x/"), ("GET", "/runs/run_x/?meta")])
async def test_a_trailing_slash_is_404_route_not_found_not_a_redirect(served, method, path):
    async with served() as (_, client):
        response = await client.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404 and "location" not in response.headers
        assert error_of(response)["code"] == "route_not_found"


async def test_requests_while_the_runtime_is_closed_get_503_runtime_not_running(caplog):
    runtime = Runtime(WORKFLOWS, store="memory://")
    async with serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
        with caplog.at_level(logging.WARNING, logger="flue.http"):
            response = await client.post("/workflows/ping")
        assert response.status_code == 503
        assert error_of(response)["code"] == "runtime_not_running"
    [record] = [r for r in caplog.records if r.name == "flue.http"]
    assert record.levelno == logging.WARNING and record.exc_info is None  # one line, no traceback


# -- middleware --------------------------------------------------------------------------------------


class BodyReads:
    """App-level ASGI middleware that counts the body messages the app pulls from the server."""

    def __init__(self, app: ASGIApp, counter: list[int]) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.counter.append(len(message.get("body", b"")))
            return message

        await self.app(scope, counting, send)


async def test_route_middleware_rejects_before_the_body_is_read_and_no_run_exists(served):
    reads: list[int] = []
    async with served(middleware=[Middleware(BodyReads, counter=reads)]) as (runtime, client):
        response = await client.post("/workflows/guarded", json={"item": "tea"})
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthenticated"
        assert reads == []
        assert await run_count(runtime) == 0


async def test_route_middleware_admits_an_authenticated_request_and_edits_its_response(served):
    async with served() as (runtime, client):
        response = await client.post(
            "/workflows/guarded", json={"item": "tea"}, headers={"authorization": "Bearer good"}
        )
        assert response.status_code == 202
        assert response.headers["x-stamped"] == "yes"  # the outer middleware saw the inner response
        assert await runs.result(response.json()["runId"], timeout=5, runtime=runtime) == "tea"


async def test_route_middleware_sees_errors_as_envelope_responses(served):
    async with served() as (_, client):
        response = await client.post("/workflows/guarded", json={"item": 3}, headers={"authorization": "Bearer good"})
        assert response.status_code == 422
        assert response.headers["x-stamped"] == "yes"


class Principals:
    """An admission policy that records who each admission was for."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    @hookimpl
    def flue_check_admission(self, request):
        self.seen.append(request.principal)


async def test_principal_set_by_route_middleware_reaches_admission_policies(served):
    principals = Principals()
    async with served(plugins=[principals]) as (_, client):
        await client.post("/workflows/guarded", json={"item": "tea"}, headers={"authorization": "Bearer good"})
        await client.post("/workflows/place-order", json={"item": "tea"})
    assert principals.seen == ["alice", None]


async def test_principal_set_by_app_middleware_reaches_admission_policies(served):
    class Authenticate:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("state", {})["principal"] = "service-a"
            await self.app(scope, receive, send)

    principals = Principals()
    async with served(plugins=[principals], middleware=[Middleware(Authenticate)]) as (_, client):
        await client.post("/workflows/place-order", json={"item": "tea"})
    assert principals.seen == ["service-a"]


async def test_route_middleware_calling_call_next_twice_is_a_500_configuration_error(make_target):
    async def twice(request, call_next):
        await call_next(request)
        return await call_next(request)

    @workflow(name="twice", http=True, middleware=[twice])
    async def run_twice(ctx: RunContext) -> None: ...

    async with serve_app([run_twice], make_target) as (_, client):
        response = await client.post("/workflows/twice")
        assert response.status_code == 500
        assert error_of(response)["code"] == "configuration_error"


async def test_app_middleware_wraps_every_route(served):
    class ApiKey:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if dict(scope["headers"]).get(b"x-api-key") != b"k":
                await JSONResponse({"error": {"code": "no_key", "message": "x"}}, status_code=401)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    async with served(middleware=[Middleware(ApiKey)]) as (runtime, client):
        assert (await client.post("/workflows/ping")).status_code == 401
        assert (await client.get("/runs/run_x?meta")).status_code == 401
        assert await run_count(runtime) == 0
        assert (await client.post("/workflows/ping", headers={"x-api-key": "k"})).status_code == 202


async def test_flue_error_raised_in_app_middleware_becomes_its_envelope(served):
    class Closed:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise Unauthenticated("Log in first.")

    async with served(middleware=[Middleware(Closed)]) as (_, client):
        response = await client.post("/workflows/ping")
        assert response.status_code == 401
        assert error_of(response) == {"code": "unauthenticated", "message": "Log in first."}


async def test_middleware_added_to_the_app_after_it_was_made_sees_admissions_too(make_target):
    seen: list[str] = []

    class Record:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope["path"])
            await self.app(scope, receive, send)

    runtime = Runtime(WORKFLOWS, target=make_target())
    app = create_app(runtime)
    app.add_middleware(Record)
    async with runtime, serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/workflows/ping")).status_code == 202
    assert seen == ["/workflows/ping"]


async def test_a_route_put_before_the_workflow_route_answers_its_path(make_target):
    async def mine(request: Request) -> Response:
        return JSONResponse({"mine": True}, status_code=200)

    runtime = Runtime(WORKFLOWS, target=make_target())
    app = create_app(runtime)
    app.router.routes.insert(0, Route("/workflows/ping", mine, methods=["POST"]))
    async with runtime, serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/workflows/ping")
    assert response.status_code == 200 and response.json() == {"mine": True}


# -- mounting and lifetime ---------------------------------------------------------------------------


async def test_mounted_app_answers_under_the_prefix_and_stream_urls_carry_it(make_target):
    runtime = Runtime(WORKFLOWS, target=make_target())

    @asynccontextmanager
    async def host_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime:  # the host owns the runtime's lifetime
            yield

    host = Starlette(routes=[Mount("/flue", app=create_app(runtime))], lifespan=host_lifespan)
    async with serve(host, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/flue/workflows/place-order", json={"item": "tea"})
        assert response.status_code == 202
        run_id = response.json()["runId"]
        assert response.json()["streamUrl"] == f"/flue/runs/{run_id}"
        assert response.headers["location"] == f"/flue/runs/{run_id}"
        missing = await client.get("/flue/nowhere")
        assert error_of(missing)["message"] == "No route matches GET /flue/nowhere."
    assert not runtime.running


async def test_app_can_open_and_close_the_runtime_in_its_own_lifespan(make_target):
    runtime = Runtime(WORKFLOWS, target=make_target())
    app = create_app(runtime, open_runtime=True)
    assert app.state.runtime is runtime
    async with serve(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        assert runtime.running
        response = await client.post("/workflows/ping?wait=result")
        assert response.json()["result"] == "pong"
    assert not runtime.running


def test_create_app_refuses_route_middleware_that_is_not_callable():
    from flue_core.errors import ConfigurationError

    @workflow(name="bad-guard", http=True, middleware=["require_token"])
    async def bad_guard(ctx: RunContext) -> None: ...

    with pytest.raises(ConfigurationError, match="not callable"):
        create_app(Runtime([bad_guard], store="memory://"))


def test_create_app_refuses_a_list_authorizer_without_listing():
    from flue_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="list_runs_enabled"):
        create_app(Runtime([], store="memory://"), authorize_run_list=lambda request: True)


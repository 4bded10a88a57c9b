"""``POST /runs/{run_id}/cancel`` end to end: uvicorn on 127.0.0.1, httpx, memory and SQLite; and
``FlueClient.cancel``. Cancelling is authorized like reads (closed by default, 404 for what may not
be read) and needs its own grant on top; it is idempotent and answers typed errors."""

from __future__ import annotations

import anyio
import pytest

from flue_core import RunContext, RunStatus, Runtime, hookimpl, runs, workflow, workflows
from flue_core.client import FlueClient
from flue_core.errors import CancelDenied, RunFinished, RunNotFound
from flue_core.http import cancel_route, create_app, serve
from http_served import error_of, local_target, served

pytestmark = pytest.mark.anyio

GATES: dict[str, anyio.Event] = {}


@workflow(name="wait", http=True)
async def wait(ctx: RunContext) -> str:
    await anyio.sleep(3600)
    return "woke"


@workflow(name="stubborn", http=True)
async def stubborn(ctx: RunContext) -> str:
    with anyio.CancelScope(shield=True):  # finishes what it does before it can be cancelled
        await anyio.sleep(1)
    return "done anyway"


@workflow(name="quick", http=True)
async def quick(ctx: RunContext) -> str:
    return "quick"


@workflow(name="broken", http=True)
async def broken(ctx: RunContext) -> None:
    raise RuntimeError("broken")


WORKFLOWS = [wait, stubborn, quick, broken]


def readers(request, run) -> bool:
    return request.headers.get("x-role") in ("reader", "operator")


def operators(request, run) -> bool:
    return request.headers.get("x-role") == "operator"


READER, OPERATOR = {"x-role": "reader"}, {"x-role": "operator"}
GRANTED = {"authorize_run_read": readers, "authorize_run_cancel": operators}


async def running(runtime: Runtime, wf=wait) -> str:
    receipt = await workflows.start(wf, runtime=runtime)
    with anyio.fail_after(5):
        while (await runs.get(receipt.run_id, runtime=runtime)).status != RunStatus.RUNNING:
            await anyio.sleep(0.01)
    return receipt.run_id


async def finished(runtime: Runtime, wf) -> str:
    receipt = await workflows.start(wf, runtime=runtime)
    with anyio.fail_after(5):
        await runs.wait(receipt.run_id, runtime=runtime)
    return receipt.run_id


async def test_cancelling_a_running_run_answers_200_with_the_cancelled_record(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled" and response.json()["runId"] == run_id
        assert response.headers["cache-control"] == "no-store"
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.CANCELLED


async def test_cancelling_is_idempotent(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        first = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        again = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
        types = [event.type async for event in runs.events(run_id, runtime=runtime)]
        assert types.count("run_end") == 1


@pytest.mark.parametrize(("wf", "status"), [(quick, "completed"), (broken, "failed")])
async def test_cancelling_a_run_that_ended_otherwise_is_409_run_finished(make_target, wf, status):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await finished(runtime, wf)
        response = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        assert response.status_code == 409
        assert error_of(response)["code"] == "run_finished"
        assert error_of(response)["details"] == {"run_id": run_id, "status": status}
        assert (await runs.get(run_id, runtime=runtime)).status == status


async def test_a_run_still_stopping_after_the_wait_answers_202_with_the_cancel_requested(make_target, monkeypatch):
    monkeypatch.setattr(cancel_route, "CANCEL_WAIT", 0.1)
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime, stubborn)
        response = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        assert response.status_code == 202
        assert response.json()["status"] == "running" and response.json()["cancelRequested"] is True
        with anyio.fail_after(5):
            record = await runs.wait(run_id, runtime=runtime)
        assert record.status == RunStatus.CANCELLED  # ended at its first await after the shield


async def test_cancelling_is_closed_by_default_even_for_readers(make_target):
    async with served(WORKFLOWS, make_target, authorize_run_read=readers) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
        assert response.status_code == 403
        assert error_of(response)["code"] == "run_cancel_denied"
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.RUNNING


async def test_a_reader_not_granted_cancelling_gets_403_and_the_run_goes_on(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/cancel", headers=READER)
        assert response.status_code == 403
        record = await runs.get(run_id, runtime=runtime)
        assert record.status == RunStatus.RUNNING and not record.cancel_requested


async def test_an_unreadable_run_and_an_unknown_run_get_the_same_404(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        unreadable = await client.post(f"/runs/{run_id}/cancel")
        unknown = await client.post("/runs/run_unknown/cancel", headers=OPERATOR)
        assert unreadable.status_code == unknown.status_code == 404
        assert error_of(unreadable)["code"] == error_of(unknown)["code"] == "run_not_found"
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.RUNNING


async def test_a_cancel_grant_does_not_make_an_unreadable_run_cancellable(make_target):
    async with served(WORKFLOWS, make_target, authorize_run_cancel=lambda request, run: True) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/cancel")
        assert response.status_code == 404
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.RUNNING


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_405_before_the_run_is_looked_up(make_target, method):
    async with served(WORKFLOWS, make_target, **GRANTED) as (_, client):
        response = await client.request(method, "/runs/run_unknown/cancel")
        assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_query_parameters_are_400(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/cancel?force=1", headers=OPERATOR)
        assert response.status_code == 400 and error_of(response)["code"] == "invalid_query"
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.RUNNING


@pytest.mark.parametrize(
    "body, headers",
    [('{"reason": "x"}', {"content-type": "application/json"}), ("garbage", {}), (" ", {"content-type": "text/plain"})],
)
async def test_a_body_is_400_unexpected_body_and_cancels_nothing(make_target, body, headers):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        for run_id in (await running(runtime), await finished(runtime, quick)):
            response = await client.post(f"/runs/{run_id}/cancel", content=body, headers={**OPERATOR, **headers})
            assert response.status_code == 400 and error_of(response)["code"] == "unexpected_body"
        assert (await runs.get(run_id, runtime=runtime)).status == RunStatus.COMPLETED
        running_ids = [r.run_id for r in (await runs.list(status="running", runtime=runtime)).runs]
        assert len(running_ids) == 1


class Operators:
    @hookimpl
    def flue_authorize_run_read(self, request, run):
        return True

    @hookimpl
    def flue_authorize_run_cancel(self, request, run):
        return request.headers.get("x-role") == "operator"


async def test_a_plugin_hook_may_grant_cancelling_and_the_apps_callable_is_asked_first(make_target):
    async with served(WORKFLOWS, make_target, plugins=[Operators()]) as (runtime, client):
        run_id = await running(runtime)
        assert (await client.post(f"/runs/{run_id}/cancel", headers=READER)).status_code == 403
        assert (await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)).status_code == 200
    refusing = {"authorize_run_cancel": lambda request, run: False}
    async with served(WORKFLOWS, make_target, plugins=[Operators()], **refusing) as (runtime, client):
        run_id = await running(runtime)
        assert (await client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)).status_code == 403


async def test_a_run_executed_by_another_process_is_cancelled_through_the_shared_store(tmp_path):
    """The app's runtime only serves HTTP; another worker on the same SQLite file executes the run."""
    executor = Runtime(WORKFLOWS, target=local_target("sqlite", tmp_path))
    front = Runtime(WORKFLOWS, target=local_target("sqlite", tmp_path))
    app = create_app(front, **GRANTED)
    async with executor, front, serve(app) as url, FlueClient(url, headers=OPERATOR) as client:
        run_id = await running(executor)
        assert (await runs.get(run_id, runtime=executor)).status == RunStatus.RUNNING
        record = await client.cancel(run_id)
        assert record.status == RunStatus.CANCELLED


async def test_the_client_raises_typed_errors_for_denied_finished_and_unknown_runs(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, http):
        base = str(http.base_url).rstrip("/")
        done = await finished(runtime, quick)
        run_id = await running(runtime)
        async with FlueClient(base, headers=READER) as reader, FlueClient(base, headers=OPERATOR) as operator:
            with pytest.raises(CancelDenied):
                await reader.cancel(run_id)
            with pytest.raises(RunFinished):
                await operator.cancel(done)
            with pytest.raises(RunNotFound):
                await operator.cancel("run_unknown")
            assert (await operator.cancel(run_id)).status == RunStatus.CANCELLED

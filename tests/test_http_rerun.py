"""``POST /runs/{run_id}/rerun`` end to end: uvicorn on 127.0.0.1, httpx, on each store; and
``FlueClient.rerun``. Re-running is authorized like cancelling (closed by default, 404 for what may
not be read, then a grant of its own) and answers like ``POST /workflows/{name}``: 202 and the new
run's receipt."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from flue_core import RunContext, RunStatus, Runtime, hookimpl, runs, workflow, workflows
from flue_core.client import FlueClient
from flue_core.errors import AdmissionDenied, InvalidRerun, RerunDenied, RunNotFound, RunUnfinished
from http_served import error_of, served

pytestmark = pytest.mark.anyio

#: Calls of each step's function, by step name: a step taken over by a re-run is not called again.
CALLS: Counter[str] = Counter()
#: Whether ``charge`` fails, as the bug a re-run comes after would.
BROKEN = {"charge": False}


def _reserve(n: int) -> int:
    CALLS["reserve"] += 1
    return n * 10


def _charge(amount: int) -> int:
    CALLS["charge"] += 1
    if BROKEN["charge"]:
        raise RuntimeError("the card service is down")
    return amount + 1


@workflow(name="order", http=True)
async def order(ctx: RunContext, input: dict) -> int:
    amount = await ctx.step("reserve", _reserve, input["n"])
    return await ctx.step("charge", _charge, amount)


@workflow(name="wait", http=True)
async def wait(ctx: RunContext) -> str:
    await anyio.sleep(3600)
    return "woke"


WORKFLOWS = [order, wait]


def readers(request, run) -> bool:
    return request.headers.get("x-role") in ("reader", "operator")


def operators(request, run) -> bool:
    return request.headers.get("x-role") == "operator"


READER, OPERATOR = {"x-role": "reader"}, {"x-role": "operator"}
GRANTED = {
    "authorize_run_read": readers,
    "authorize_run_rerun": operators,
    "list_runs_enabled": True,
    "authorize_run_list": lambda request: True,
}


@pytest.fixture(autouse=True)
def _fresh_counts():
    CALLS.clear()
    BROKEN["charge"] = False


async def ended(runtime: Runtime, input: dict | None = None) -> str:
    receipt = await workflows.start(order, input=input or {"n": 4}, runtime=runtime)
    with anyio.fail_after(5):
        await runs.wait(receipt.run_id, runtime=runtime)
    return receipt.run_id


async def running(runtime: Runtime) -> str:
    receipt = await workflows.start(wait, runtime=runtime)
    with anyio.fail_after(5):
        while (await runs.get(receipt.run_id, runtime=runtime)).status != RunStatus.RUNNING:
            await anyio.sleep(0.01)
    return receipt.run_id


async def test_a_rerun_answers_202_with_the_receipt_of_a_new_run_that_names_the_old_one(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", headers=OPERATOR)
        assert response.status_code == 202
        receipt = response.json()
        assert receipt["runId"] != old and receipt["workflow"] == "order"
        assert response.headers["location"] == receipt["streamUrl"] == f"/runs/{receipt['runId']}"
        with anyio.fail_after(5):
            record = await runs.wait(receipt["runId"], runtime=runtime)
        assert record.rerun_of == old and record.input == {"n": 4}
        meta = await client.get(f"/runs/{receipt['runId']}?meta", headers=READER)
        assert meta.json()["rerunOf"] == old


async def test_a_rerun_takes_over_the_stored_steps_and_runs_from_the_failed_one(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        BROKEN["charge"] = True
        old = await ended(runtime)
        assert (await runs.get(old, runtime=runtime)).status == RunStatus.FAILED
        BROKEN["charge"] = False  # the fix is deployed
        response = await client.post(f"/runs/{old}/rerun", headers=OPERATOR)
        with anyio.fail_after(5):
            record = await runs.wait(response.json()["runId"], runtime=runtime)
        assert record.status == RunStatus.COMPLETED and record.result == 41
        assert CALLS == {"reserve": 1, "charge": 2}  # reserve replayed from the old run's result


async def test_from_step_runs_that_step_and_the_ones_after_it_again(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", json={"fromStep": "reserve"}, headers=OPERATOR)
        assert response.status_code == 202
        with anyio.fail_after(5):
            assert (await runs.wait(response.json()["runId"], runtime=runtime)).status == RunStatus.COMPLETED
        assert CALLS == {"reserve": 2, "charge": 2}


async def test_the_listing_finds_the_reruns_of_a_run(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old, other = await ended(runtime), await ended(runtime)
        new = (await client.post(f"/runs/{old}/rerun", headers=OPERATOR)).json()["runId"]
        await client.post(f"/runs/{other}/rerun", headers=OPERATOR)
        listing = await client.get("/runs", params={"rerunOf": old}, headers=READER)
        assert listing.status_code == 200
        assert [run["runId"] for run in listing.json()["runs"]] == [new]


async def test_an_idempotency_key_makes_a_retried_rerun_answer_the_same_run(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        headers = {**OPERATOR, "idempotency-key": "rerun-after-fix"}
        first = await client.post(f"/runs/{old}/rerun", headers=headers)
        again = await client.post(f"/runs/{old}/rerun", headers=headers)
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        assert len((await runs.list(rerun_of=old, runtime=runtime)).runs) == 1


async def test_rerunning_a_run_that_has_not_ended_is_409_run_unfinished(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        run_id = await running(runtime)
        response = await client.post(f"/runs/{run_id}/rerun", headers=OPERATOR)
        assert response.status_code == 409
        assert error_of(response)["code"] == "run_unfinished"
        assert error_of(response)["details"] == {"run_id": run_id, "status": "running"}
        assert (await runs.list(rerun_of=run_id, runtime=runtime)).runs == []


@pytest.mark.parametrize(
    "body",
    [{"fromStep": "refund"}, {"fromStep": ""}, {"fromStep": 3}, {"from_step": "charge"}, ["charge"], "charge"],
)
async def test_a_bad_from_step_is_400_invalid_rerun_and_starts_nothing(make_target, body):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", json=body, headers=OPERATOR)
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_rerun"
        assert (await runs.list(rerun_of=old, runtime=runtime)).runs == []


async def test_a_body_that_is_not_json_is_refused_like_a_starts(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", content="charge", headers={**OPERATOR, "content-type": "text/plain"})
        assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


async def test_rerunning_is_closed_by_default_even_for_readers(make_target):
    async with served(WORKFLOWS, make_target, authorize_run_read=readers) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", headers=OPERATOR)
        assert response.status_code == 403
        assert error_of(response)["code"] == "run_rerun_denied"
        assert (await runs.list(rerun_of=old, runtime=runtime)).runs == []


async def test_a_reader_not_granted_rerunning_gets_403(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", headers=READER)
        assert response.status_code == 403 and error_of(response)["code"] == "run_rerun_denied"


async def test_an_unreadable_run_and_an_unknown_run_get_the_same_404(make_target):
    async with served(WORKFLOWS, make_target, authorize_run_rerun=lambda request, run: True) as (runtime, client):
        old = await ended(runtime)
        unreadable = await client.post(f"/runs/{old}/rerun")
        unknown = await client.post("/runs/run_unknown/rerun")
        assert unreadable.status_code == unknown.status_code == 404
        assert error_of(unreadable)["code"] == error_of(unknown)["code"] == "run_not_found"
        assert (await runs.list(rerun_of=old, runtime=runtime)).runs == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_405_before_the_run_is_looked_up(make_target, method):
    async with served(WORKFLOWS, make_target, **GRANTED) as (_, client):
        response = await client.request(method, "/runs/run_unknown/rerun")
        assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_query_parameters_are_400(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun?fromStep=charge", headers=OPERATOR)
        assert response.status_code == 400 and error_of(response)["code"] == "invalid_query"


class Operators:
    @hookimpl
    def flue_authorize_run_read(self, request, run):
        return True

    @hookimpl
    def flue_authorize_run_rerun(self, request, run):
        return request.headers.get("x-role") == "operator"


async def test_a_plugin_hook_may_grant_rerunning_and_the_apps_callable_is_asked_first(make_target):
    async with served(WORKFLOWS, make_target, plugins=[Operators()]) as (runtime, client):
        old = await ended(runtime)
        assert (await client.post(f"/runs/{old}/rerun", headers=READER)).status_code == 403
        assert (await client.post(f"/runs/{old}/rerun", headers=OPERATOR)).status_code == 202
    refusing = {"authorize_run_rerun": lambda request, run: False}
    async with served(WORKFLOWS, make_target, plugins=[Operators()], **refusing) as (runtime, client):
        old = await ended(runtime)
        assert (await client.post(f"/runs/{old}/rerun", headers=OPERATOR)).status_code == 403


class NoReruns:
    """An admission policy: re-runs are admitted like any start, and may be refused like one."""

    seen: list[tuple[str, str | None]] = []

    @hookimpl
    def flue_check_admission(self, request):
        self.seen.append((request.source, request.rerun_of))
        if request.source == "rerun":
            raise AdmissionDenied("No re-runs today.")


async def test_admission_policies_see_the_rerun_and_may_refuse_it(make_target):
    NoReruns.seen = []
    async with served(WORKFLOWS, make_target, plugins=[NoReruns()], **GRANTED) as (runtime, client):
        old = await ended(runtime)
        response = await client.post(f"/runs/{old}/rerun", headers=OPERATOR)
        assert response.status_code == 403 and error_of(response)["code"] == "admission_denied"
        assert NoReruns.seen == [("python", None), ("rerun", old)]


async def test_the_client_reruns_and_raises_typed_errors(make_target):
    async with served(WORKFLOWS, make_target, **GRANTED) as (runtime, http):
        base = str(http.base_url).rstrip("/")
        old, going = await ended(runtime), await running(runtime)
        async with FlueClient(base, headers=READER) as reader, FlueClient(base, headers=OPERATOR) as operator:
            with pytest.raises(RerunDenied):
                await reader.rerun(old)
            with pytest.raises(RunUnfinished):
                await operator.rerun(going)
            with pytest.raises(InvalidRerun):
                await operator.rerun(old, "refund")
            with pytest.raises(RunNotFound):
                await operator.rerun("run_unknown")
            receipt = await operator.rerun(old, "charge", key="k1")
            assert (await operator.rerun(old, "charge", key="k1")).run_id == receipt.run_id
            page = await operator.list(rerun_of=old)
            assert [run.run_id for run in page.runs] == [receipt.run_id]
        with anyio.fail_after(5):
            assert (await runs.wait(receipt.run_id, runtime=runtime)).status == RunStatus.COMPLETED
        assert CALLS == {"reserve": 1, "charge": 2}

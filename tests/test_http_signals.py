"""``POST /runs/{run_id}/signals/{name}`` end to end (uvicorn on 127.0.0.1, httpx, memory and
SQLite): authorized like reads and closed by default, validated against the workflow's declared
model, idempotent with ``Idempotency-Key``, typed errors for bad, ended and unknown runs."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flue_core import RunContext, RunStatus, runs, workflow, workflows
from flue_core.testing.base import wait_for_status
from http_served import error_of, served

pytestmark = pytest.mark.anyio


class Decision(BaseModel):
    approved: bool
    by: str


@workflow(name="expense", http=True, signals={"decision": Decision})
async def expense(ctx: RunContext, input: dict) -> dict:
    decision = await ctx.wait_for_signal("decision")
    return {"amount": input["amount"], "approved": decision.approved, "by": decision.by}


@workflow(name="note-taker", http=True)
async def note_taker(ctx: RunContext) -> object:
    return await ctx.wait_for_signal("note")


WORKFLOWS = [expense, note_taker]


def readers(request, run) -> bool:
    return request.headers.get("x-role") in ("reader", "approver")


def approvers(request, run) -> bool:
    return request.headers.get("x-role") == "approver"


OPEN = {"authorize_run_read": readers, "authorize_run_signal": approvers}
APPROVER = {"x-role": "approver"}


async def waiting_run(rt, workflow_, input=None) -> str:  # type: ignore[no-untyped-def]
    receipt = await workflows.start(workflow_, input=input, runtime=rt)
    await wait_for_status(rt, receipt.run_id, "waiting")
    return receipt.run_id


async def test_a_signal_over_http_resumes_the_waiting_run(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, expense, {"amount": 120})
        answer = await client.post(f"/runs/{run_id}/signals/decision", json={"approved": True, "by": "ada"}, headers=APPROVER)
        assert answer.status_code == 202
        body = answer.json()
        assert body["runId"] == run_id and body["name"] == "decision" and body["signalId"].startswith("sig_")
        assert body["duplicate"] is False
        assert await runs.result(run_id, timeout=10, runtime=rt) == {"amount": 120, "approved": True, "by": "ada"}


async def test_an_idempotency_key_delivers_a_signal_once(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        headers = {**APPROVER, "idempotency-key": "note-1"}
        first = await client.post(f"/runs/{run_id}/signals/note", json="hello", headers=headers)
        again = await client.post(f"/runs/{run_id}/signals/note", json="hello", headers=headers)
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["duplicate"] is True and again.json()["signalId"] == first.json()["signalId"]
        conflict = await client.post(f"/runs/{run_id}/signals/note", json="other", headers=headers)
        assert conflict.status_code == 409 and error_of(conflict)["code"] == "idempotency_key_conflict"


async def test_signalling_is_closed_by_default_and_an_unreadable_run_is_not_found(make_target):
    async with served(WORKFLOWS, make_target) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        refused = await client.post(f"/runs/{run_id}/signals/note", json=1, headers=APPROVER)
        unknown = await client.post("/runs/run_nobody/signals/note", json=1, headers=APPROVER)
        assert refused.status_code == unknown.status_code == 404
        assert error_of(refused)["code"] == error_of(unknown)["code"] == "run_not_found"
        assert (await runs.get(run_id, runtime=rt)).status == RunStatus.WAITING


async def test_a_reader_not_granted_signalling_gets_403_and_nothing_is_sent(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        answer = await client.post(f"/runs/{run_id}/signals/note", json=1, headers={"x-role": "reader"})
        assert answer.status_code == 403 and error_of(answer)["code"] == "run_signal_denied"
        events = [e.type async for e in runs.events(run_id, runtime=rt)]
        assert "signal_received" not in events


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("decision", {"approved": "maybe", "by": "x"}, 422, "invalid_signal"),
        ("decision", None, 422, "invalid_signal"),
        ("other", {"approved": True, "by": "x"}, 422, "invalid_signal"),
        ("9-bad", {}, 422, "invalid_signal"),
        ("note", _nested(150), 422, "invalid_signal"),
        ("note", _nested(900), 422, "invalid_signal"),
    ],
)
async def test_a_bad_signal_gets_a_typed_4xx_and_changes_nothing(make_target, name, body, status, code):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, expense, {"amount": 1})
        answer = await client.post(f"/runs/{run_id}/signals/{name}", json=body, headers=APPROVER)
        assert answer.status_code == status and error_of(answer)["code"] == code
        assert (await runs.get(run_id, runtime=rt)).status == RunStatus.WAITING


async def test_a_body_that_is_not_json_is_refused(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        bad = await client.post(f"/runs/{run_id}/signals/note", content=b"{", headers={**APPROVER, "content-type": "application/json"})
        text = await client.post(f"/runs/{run_id}/signals/note", content=b"hi", headers={**APPROVER, "content-type": "text/plain"})
        assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_json"
        assert text.status_code == 415 and "the signal's data" in error_of(text)["message"]


async def test_a_non_ascii_key_over_http_is_the_same_key_as_from_python(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        headers = {**APPROVER, "idempotency-key": "заметка-1".encode()}
        first = await client.post(f"/runs/{run_id}/signals/note", json="hello", headers=headers)
        assert first.status_code == 202
        again = await runs.signal(run_id, "note", "hello", key="заметка-1", runtime=rt)
        assert again.duplicate is True and again.signal_id == first.json()["signalId"]


async def test_a_signal_to_an_ended_run_is_409(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        await runs.signal(run_id, "note", "done", runtime=rt)
        await runs.wait(run_id, timeout=10, runtime=rt)
        answer = await client.post(f"/runs/{run_id}/signals/note", json=1, headers=APPROVER)
        assert answer.status_code == 409 and error_of(answer)["code"] == "run_finished"
        assert error_of(answer)["details"]["status"] == "completed"


async def test_only_post_is_allowed_and_no_query_is_understood(make_target):
    async with served(WORKFLOWS, make_target, **OPEN) as (rt, client):
        run_id = await waiting_run(rt, note_taker)
        get = await client.get(f"/runs/{run_id}/signals/note", headers=APPROVER)
        assert get.status_code == 405 and get.headers["allow"] == "POST"
        query = await client.post(f"/runs/{run_id}/signals/note?x=1", json=1, headers=APPROVER)
        assert query.status_code == 400 and error_of(query)["code"] == "invalid_query"

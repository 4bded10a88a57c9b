"""Flow control over HTTP end to end: uvicorn on 127.0.0.1, httpx and ``FlueClient`` as the clients, the
memory store. ``?priority=`` is stored or refused with no run, a key that cannot be computed creates
no run, a queued run of a busy key says what it waits for (``?meta`` and the listing), debounced
starts fold into one run that takes the last input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flue_core import RunContext, Runtime, workflow
from flue_core.client import FlueClient
from http_served import error_of, local_target, served

pytestmark = pytest.mark.anyio

#: Gates a workflow waits on, by name; every one is opened when its test ends.
GATES: dict[str, anyio.Event] = {}


@workflow(name="flow-ping", http=True)
async def ping(ctx: RunContext) -> str:
    return "pong"


@workflow(name="flow-per-customer", http=True, concurrency=1, concurrency_key="customer")
async def per_customer(ctx: RunContext, input: dict) -> str:
    await GATES[input["gate"]].wait()
    return input["customer"]


def customer_of(input: dict) -> str:
    return input["account"]["customer"]  # a KeyError when the input has no account


@workflow(name="flow-keyed-by-function", http=True, concurrency=2, concurrency_key=customer_of)
async def keyed_by_function(ctx: RunContext, input: dict) -> None:
    return None


@workflow(name="flow-debounced", http=True, debounce=1.0, debounce_key="customer")
async def debounced(ctx: RunContext, input: dict) -> str:
    return input["label"]


WORKFLOWS = [ping, per_customer, keyed_by_function, debounced]


@pytest.fixture(autouse=True)
def open_gates() -> Iterator[None]:
    yield
    for gate in GATES.values():
        gate.set()
    GATES.clear()


@asynccontextmanager
async def flow_app(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """The flow workflows served on a memory store, with run reads and the listing open to all."""
    async with served(
        WORKFLOWS,
        lambda: local_target("memory", tmp_path),
        authorize_run_read=lambda request, run: True,
        list_runs_enabled=True,
        authorize_run_list=lambda request: True,
    ) as (runtime, client):
        yield runtime, client


def new_gate() -> str:
    name = f"gate-{len(GATES)}"
    GATES[name] = anyio.Event()
    return name


async def post(client: httpx.AsyncClient, workflow: str, input: Any = None, **params: Any) -> str:
    response = await client.post(f"/workflows/{workflow}", json=input, params=params)
    assert response.status_code == 202, response.text
    return response.json()["runId"]


async def meta(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/runs/{run_id}", params={"meta": ""})
    assert response.status_code == 200, response.text
    return response.json()


async def meta_when(client: httpx.AsyncClient, run_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
    """The run's record over ``?meta`` once it has ``status``."""
    with anyio.fail_after(timeout):
        while (record := await meta(client, run_id))["status"] != status:
            await anyio.sleep(0.02)
    return record


async def listed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/runs")
    assert response.status_code == 200, response.text
    return response.json()["runs"]


async def saturate(client: httpx.AsyncClient, customer: str = "acme") -> tuple[str, str]:
    """``(running, queued)``: two runs of one key of ``flow-per-customer`` (one slot per key), the
    first holding the slot on its gate, the second queued behind it."""
    gate = new_gate()
    running = await post(client, "flow-per-customer", {"gate": gate, "customer": customer})
    await meta_when(client, running, "running")
    queued = await post(client, "flow-per-customer", {"gate": gate, "customer": customer})
    return running, queued


# -- priority ------------------------------------------------------------------------------------------


async def test_a_priority_in_the_query_is_stored_on_the_run(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        run_id = await post(client, "flow-ping", priority="7")
        record = await meta(client, run_id)
    assert record["priority"] == 7


async def test_a_start_without_a_priority_has_the_default_0(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        record = await meta(client, await post(client, "flow-ping"))
    assert record["priority"] == 0


@pytest.mark.parametrize("priority", ["-100", "100"])
async def test_the_ends_of_the_priority_range_are_accepted(tmp_path, priority):
    async with flow_app(tmp_path) as (runtime, client):
        record = await meta(client, await post(client, "flow-ping", priority=priority))
    assert record["priority"] == int(priority)


@pytest.mark.parametrize("priority", ["abc", "101", "-101", "1.5", "", "--5", "99999"])
async def test_a_priority_that_is_not_an_integer_in_range_is_400_and_creates_no_run(tmp_path, priority):
    async with flow_app(tmp_path) as (runtime, client):
        response = await client.post("/workflows/flow-ping", params={"priority": priority})
        runs_after = await listed(client)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_priority"
    assert "-100 to 100" in error["message"]
    assert runs_after == []


async def test_the_client_sends_its_priority(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        async with FlueClient(str(client.base_url)) as flue:
            receipt = await flue.start("flow-ping", priority=-3)
        record = await meta(client, receipt.run_id)
    assert record["priority"] == -3


# -- flow keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow", "body", "said"),
    [
        ("flow-keyed-by-function", {"name": "no account"}, "its concurrency_key function raised KeyError"),
        ("flow-per-customer", {"gate": "unused"}, "the input has no field 'customer'"),
        ("flow-per-customer", {"gate": "unused", "customer": 7}, "must be a non-empty string"),
    ],
    ids=["function-raises", "field-missing", "not-a-string"],
)
async def test_a_flow_key_that_cannot_be_computed_is_422_invalid_flow_key_and_creates_no_run(tmp_path, workflow, body, said):
    async with flow_app(tmp_path) as (runtime, client):
        response = await client.post(f"/workflows/{workflow}", json=body)
        runs_after = await listed(client)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_flow_key"
    assert said in error["message"]
    assert runs_after == []


async def test_the_flow_keys_of_a_run_are_on_its_record(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        gate = new_gate()
        run_id = await post(client, "flow-per-customer", {"gate": gate, "customer": "acme"})
        record = await meta(client, run_id)
    assert record["concurrencyKey"] == "acme"
    assert record["rateKey"] is None and record["debounceKey"] is None


# -- what a queued run waits for -------------------------------------------------------------------------


async def test_a_queued_run_of_a_busy_key_waits_for_a_slot_of_that_key_over_meta(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        running, queued = await saturate(client)
        record = await meta(client, queued)
        holder = await meta(client, running)
    assert record["status"] == "queued"
    assert record["queuedFor"] == {
        "kind": "slot",
        "key": "acme",
        "running": 1,
        "limit": 1,
        "until": None,
        "message": "A slot of key 'acme': 1 of 1 running.",
    }
    assert holder["queuedFor"] is None  # a running run waits for nothing


async def test_the_listing_says_what_each_queued_run_waits_for(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        running, queued = await saturate(client)
        rows = {row["runId"]: row for row in await listed(client)}
    assert rows[queued]["status"] == "queued"
    assert rows[queued]["queuedFor"]["kind"] == "slot"
    assert (rows[queued]["queuedFor"]["key"], rows[queued]["queuedFor"]["running"], rows[queued]["queuedFor"]["limit"]) == (
        "acme", 1, 1,
    )  # fmt: skip
    assert rows[running]["queuedFor"] is None


async def test_another_key_is_not_held_back_by_a_busy_one(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        running, queued = await saturate(client, "acme")
        other = await post(client, "flow-per-customer", {"gate": new_gate(), "customer": "globex"})
        record = await meta_when(client, other, "running")
        still = await meta(client, queued)
    assert record["concurrencyKey"] == "globex"
    assert still["status"] == "queued" and still["queuedFor"]["key"] == "acme"


async def test_a_queued_run_starts_when_the_slot_of_its_key_frees(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        running, queued = await saturate(client)
        for gate in GATES.values():
            gate.set()
        record = await meta_when(client, queued, "completed")
    assert record["result"] == "acme" and record["queuedFor"] is None


# -- debounce ----------------------------------------------------------------------------------------------


async def test_debounced_posts_within_the_window_fold_into_one_run_that_takes_the_last_input(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        first = await post(client, "flow-debounced", {"customer": "acme", "label": "first"})
        second = await post(client, "flow-debounced", {"customer": "acme", "label": "second"})
        waiting = await meta(client, first)
        done = await meta_when(client, first, "completed")
    assert second == first
    assert waiting["status"] == "scheduled"
    assert waiting["debounceKey"] == "acme"
    assert waiting["queuedFor"]["kind"] == "debounce"
    assert waiting["queuedFor"]["key"] == "acme" and waiting["queuedFor"]["until"] is not None
    assert done["result"] == "second" and done["input"] == {"customer": "acme", "label": "second"}


async def test_debounced_posts_of_other_keys_are_other_runs(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        acme = await post(client, "flow-debounced", {"customer": "acme", "label": "a"})
        globex = await post(client, "flow-debounced", {"customer": "globex", "label": "g"})
        results = [(await meta_when(client, run_id, "completed"))["result"] for run_id in (acme, globex)]
    assert acme != globex and results == ["a", "g"]


async def test_a_delayed_start_of_a_debounced_workflow_is_400_and_creates_no_run(tmp_path):
    async with flow_app(tmp_path) as (runtime, client):
        response = await client.post("/workflows/flow-debounced", json={"customer": "acme", "label": "x"}, params={"delay": "5"})
        runs_after = await listed(client)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_schedule"
    assert runs_after == []

"""Request bodies JSON parses but a run cannot carry: typed 4xx answers, never a 500, and no run."""

from __future__ import annotations

import pytest

from echo_app import echo, echo_dict, tree
from flue_core import runs
from flue_core.limits import MAX_DEPTH
from http_served import error_of, served

pytestmark = pytest.mark.anyio


WORKFLOWS = [echo, echo_dict, tree]

REFUSED = {
    "surrogate-in-a-value": ("echo", '{"name": "\\ud800"}'),
    "surrogate-in-a-key": ("echo", '{"\\udfff": 1}'),
    "surrogate-pair-reversed": ("echo-dict", '{"a": "\\udc00\\ud800"}'),
    "surrogate-in-a-model-field": ("tree", '{"child": {"child": null, "extra": "\\ud83d"}}'),
    "1e400-in-a-dict": ("echo-dict", '{"x": 1e400}'),
    "minus-1e400-in-a-list": ("echo", "[-1e400]"),
    "deeper-than-the-limit": ("echo", "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
    "a-few-hundred-levels": ("echo-dict", '{"a":' * 300 + "1" + "}" * 300),
    "a-few-hundred-levels-of-a-model": ("tree", '{"child":' * 300 + "null" + "}" * 300),
    "past-the-parser": ("echo", "[" * 50_000 + "]" * 50_000),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_body_a_run_cannot_carry_is_422_input_not_json_and_creates_no_run(make_target, case):
    name, body = REFUSED[case]
    async with served(WORKFLOWS, make_target) as (runtime, client):
        response = await client.post(f"/workflows/{name}", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert error_of(response)["code"] == "input_not_json"
        assert (await runs.list(runtime=runtime)).runs == []


async def test_a_body_at_the_nesting_limit_is_admitted_and_read_back_unchanged(make_target):
    body = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    async with served(WORKFLOWS, make_target) as (_, client):
        response = await client.post("/workflows/echo?wait=result", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200
        assert response.text.endswith('"result":' + body + "}")


async def test_an_integer_past_the_conversion_limit_is_400_invalid_json(make_target):
    async with served(WORKFLOWS, make_target) as (runtime, client):
        response = await client.post("/workflows/echo", content="1" * 5000, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_json"
        assert (await runs.list(runtime=runtime)).runs == []

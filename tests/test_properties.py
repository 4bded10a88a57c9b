"""Property-based tests (hypothesis) of what enters from outside.

Admission: every generated value — JSON-like, with lone surrogates and control characters, deep and
wide, with huge and non-finite numbers — is either admitted and read back **unchanged** (same types,
same values), or refused with a typed error and no run. The HTTP surface: no generated request gets a
5xx, and every error is the one envelope. SQLite is the store, being the one that encodes text.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo_app import echo, echo_dict, quick
from flue_core import InputNotSerializable, Runtime, runs, workflows
from flue_core.errors import InvalidKey
from flue_core.http import create_app, serve
from flue_core.limits import MAX_DEPTH
from flue_core.snapshot import dumps, snapshot
from flue_core.streams import ReadOptions
from flue_node_like import LocalTarget, SqliteStore

# Random locally (new cases each run, failures kept in .hypothesis/); fixed examples in CI.
PROFILE = settings(
    max_examples=150,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


WORKFLOWS = [echo, echo_dict, quick]

# -- strategies -------------------------------------------------------------------------------------

#: Any code point: lone surrogates (drawn on their own: hypothesis' own text rarely holds them) and
#: control characters included.
ANY_CHARACTER = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.integers(0, 0x1F).map(chr),
)
ANY_TEXT = st.text(ANY_CHARACTER, max_size=12)
NUMBERS = st.one_of(
    st.integers(),
    # Around the int/str conversion limit (sampled: hypothesis itself cannot print such integers).
    st.builds(lambda digits, sign: sign * 10 ** (digits - 1), st.integers(4295, 4305), st.sampled_from([1, -1])),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT)


def nested(depth: int, leaf: Any, kind: str) -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"k": leaf}
    return leaf


DEEP = st.builds(nested, st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3), SCALARS, st.sampled_from(["list", "dict"]))
WIDE = st.one_of(st.lists(SCALARS, min_size=50, max_size=300), st.dictionaries(ANY_TEXT, SCALARS, min_size=20, max_size=100))
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ANY_TEXT, children, max_size=5),
    max_leaves=30,
)
VALUES = st.one_of(JSON_LIKE, DEEP, WIDE, st.dictionaries(ANY_TEXT, st.one_of(JSON_LIKE, DEEP), max_size=3))


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (``1 == 1.0 == True`` and ``0.0 == -0.0`` are not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# -- admission --------------------------------------------------------------------------------------


@contextmanager
def sqlite_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    db = tmp_path_factory.mktemp("properties") / "flue.db"
    runtime = Runtime(WORKFLOWS, target=LocalTarget(SqliteStore(db), shutdown_grace=0.2))
    with runtime.run_in_thread():
        yield runtime


def run_count(runtime: Runtime) -> int:
    total, cursor = 0, None
    while True:
        page = runtime.call_sync(partial(runs.list, limit=1000, cursor=cursor, runtime=runtime))
        total += len(page.runs)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor


def test_every_input_is_admitted_unchanged_or_refused_typed_with_no_run(tmp_path_factory):
    with sqlite_runtime(tmp_path_factory) as runtime:

        @PROFILE
        @given(value=VALUES, wf=st.sampled_from([echo, echo_dict]))
        def check(value: Any, wf: Any) -> None:
            before = run_count(runtime)
            try:
                receipt = workflows.start_sync(wf, input=value, runtime=runtime)
            except InputNotSerializable:
                assert run_count(runtime) == before
                return
            except Exception as exc:  # a dict-only workflow refuses other shapes, typed
                assert getattr(exc, "code", None) == "invalid_input", repr(exc)
                assert run_count(runtime) == before
                return
            expected = {} if value is None else value  # no input is validated as an empty object (documented)
            result = runtime.call_sync(partial(runs.result, receipt.run_id, timeout=10, runtime=runtime))
            assert same(result, expected)
            record = runtime.call_sync(partial(runs.get, receipt.run_id, runtime=runtime))
            assert same(record.input, expected)

        check()


def test_every_key_is_kept_unchanged_or_refused_typed_with_no_run(tmp_path_factory):
    with sqlite_runtime(tmp_path_factory) as runtime:

        @PROFILE
        @given(key=st.text(ANY_CHARACTER, max_size=300))
        def check(key: str) -> None:
            before = run_count(runtime)
            try:
                receipt = workflows.start_sync(quick, key=key, runtime=runtime)
            except InvalidKey:
                assert run_count(runtime) == before
                return
            again = workflows.start_sync(quick, key=key, runtime=runtime)
            assert again.run_id == receipt.run_id
            record = runtime.call_sync(partial(runs.get, receipt.run_id, runtime=runtime))
            assert record.key == key

        check()


# -- the HTTP surface -------------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
#: Path segments: ordinary, percent-encoded bytes of any kind (invalid UTF-8 included), and long.
SEGMENTS = st.one_of(
    st.sampled_from(["echo", "echo-dict", "quick", "nowhere", "run_unknown", "", ".", "..", "%00", "%ED%A0%80", "%FF"]),
    st.binary(max_size=12).map(lambda raw: quote(raw, safe="")),
    st.text(max_size=20).map(lambda text: quote(text, safe="")),
    st.just("x" * 300),
)
PARAMETERS = st.sampled_from(["limit", "cursor", "offset", "live", "tail", "wait", "meta", "status", "workflow", "force", ""])
PARAMETER_VALUES = st.one_of(
    st.sampled_from(["-1", "now", "--5", "+5", "0", "1", "1001", "long-poll", "sse", "result", "running", "\u0663", "1e3"]),
    st.text(max_size=30),
    st.just("1" * 5000),
)
QUERIES = st.lists(st.tuples(PARAMETERS, PARAMETER_VALUES), max_size=4)
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/json; charset=utf-8", "text/plain", "application/x+json", ""])


def body_text(value: Any) -> bytes:
    """A value as JSON text with ASCII escapes (so lone surrogates travel as ``\\ud800``), or its repr
    when JSON cannot write it (NaN, huge integers...): either way, bytes a client could send."""

    try:
        return json.dumps(value, ensure_ascii=True).encode()
    except (ValueError, RecursionError):
        pass
    try:
        return repr(value).encode("utf-8", "surrogatepass")
    except ValueError:  # an integer too long for repr()
        return b"[" + b"9" * 5000 + b"]"


BODIES = st.one_of(st.none(), st.binary(max_size=64), JSON_LIKE.map(body_text), DEEP.map(body_text))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], dict[str, str], bytes | None]:
    run_id = draw(st.sampled_from(PROBES))
    shape = draw(st.sampled_from(["workflow", "run", "cancel", "runs", "other"]))
    segment = draw(SEGMENTS)
    path = {
        "workflow": f"/workflows/{segment}",
        "run": f"/runs/{draw(st.sampled_from([run_id, segment]))}",
        "cancel": f"/runs/{draw(st.sampled_from([run_id, segment]))}/cancel",
        "runs": "/runs",
        "other": f"/{segment}/{draw(SEGMENTS)}",
    }[shape]
    headers: dict[str, str] = {}
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers["content-type"] = content_type
    if draw(st.booleans()):
        # What HTTP lets a header value hold: visible ASCII, spaces inside, and obs-text (0x80-0xff).
        value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300)
        headers["idempotency-key"] = draw(value.map(str.strip))
    if draw(st.booleans()):
        headers["x-role"] = "operator"
    return draw(METHODS), path, draw(QUERIES), headers, draw(BODIES)


#: Ids of real runs the requests may name (filled once the server runs).
PROBES: list[str] = ["run_unknown"]


def operators(request: Any, run: Any) -> bool:
    return request.headers.get("x-role") == "operator"


@contextmanager
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, str]]:
    db = tmp_path_factory.mktemp("http-properties") / "flue.db"
    runtime = Runtime(WORKFLOWS, target=LocalTarget(SqliteStore(db), shutdown_grace=0.2))
    app = create_app(
        runtime,
        authorize_run_read=operators,
        authorize_run_cancel=operators,
        list_runs_enabled=True,
        authorize_run_list=lambda request: request.headers.get("x-role") == "operator",
        wait_timeout=2,
        stream_options=ReadOptions(long_poll_timeout=0.2, sse_heartbeat=0.1, sse_max_duration=0.3),
    )

    @asynccontextmanager
    async def opened() -> Any:
        async with runtime, serve(app, timeout_graceful_shutdown=1) as url:
            yield url

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(opened()) as url:
        yield runtime, url


def test_no_generated_request_gets_a_5xx(tmp_path_factory):
    with served_app(tmp_path_factory) as (runtime, url), httpx.Client(base_url=url, timeout=10) as client:
        for wf in (quick, echo):
            PROBES.append(workflows.start_sync(wf, input=None if wf is quick else {"a": 1}, runtime=runtime).run_id)

        @PROFILE
        @given(request=requests())
        def check(request: tuple[str, str, list[tuple[str, str]], dict[str, str], bytes | None]) -> None:
            method, path, query, headers, body = request
            raw_headers = {name: value.encode("latin-1") for name, value in headers.items()}  # HTTP's own charset
            response = client.request(method, path, params=query, headers=raw_headers, content=body)
            assert response.status_code < 500, (response.status_code, response.text[:500])
            if response.status_code >= 400 and method != "HEAD":
                error = response.json()["error"]
                assert isinstance(error["code"], str) and isinstance(error["message"], str)

        check()


def test_the_snapshot_is_the_identity_on_what_it_admits():
    """What admission stores is exactly what was given, for every value snapshot accepts."""

    @PROFILE
    @given(value=VALUES)
    def check(value: Any) -> None:
        try:
            copied = snapshot(value)
        except ValueError:
            return
        assert same(copied, value)
        assert dumps(copied).encode("utf-8")  # always encodable text

    check()

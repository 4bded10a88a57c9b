"""What the Redis run store promises beyond the contract suite (tests/test_contract_redis.py): bad
configuration fails at start with a typed error, a call sent twice over a broken connection takes
effect once, leases are dated by Redis's clock, retention, per-key subscriptions. Real redis-server,
real sockets (a TCP relay that cuts connections stands in for a network fault)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from flue_core import Runtime, runs, workflow, workflows
from flue_core.errors import ConfigurationError, StoreUnavailable, UnsupportedSchemaVersion
from flue_core.flow.limits import Limits
from flue_core.models import RunStatus, format_timestamp, utc_now
from flue_core.snapshot import dumps
from flue_core.store import READY, NewEvent, NewRun, Outcome, RunQuery, WorkerInfo, event_json
from flue_node_like import LocalTarget, RedisStore
from flue_node_like.redis_rows import event_head, event_mid
from flue_node_like.redis_server import RedisServer

pytestmark = pytest.mark.anyio
FAST = "connect_timeout=0.5&timeout=0.5"


@workflow(name="redis-echo")
async def echo(ctx, input: dict) -> dict:  # type: ignore[no-untyped-def]
    return input


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def locked_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis", password="pw")
    server.start()
    yield server
    server.kill()


async def silent_port() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


# -- bad configuration: a typed error at start, never a hang ----------------------------------------------


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("unreachable", StoreUnavailable),
        ("silent", StoreUnavailable),
        ("malformed", ConfigurationError),
        ("unknown-option", ConfigurationError),
        ("wrong-password", ConfigurationError),
        ("no-password", ConfigurationError),
        ("missing-db", ConfigurationError),
    ],
)
async def test_bad_configuration_fails_the_runtime_at_start_with_a_typed_error(locked_server, where, error) -> None:  # type: ignore[no-untyped-def]
    silent, port = await silent_port()
    urls = {
        "unreachable": f"redis://127.0.0.1:{closed_port()}/0?{FAST}",
        "silent": f"redis://127.0.0.1:{port}/0?{FAST}",
        "malformed": "redis://127.0.0.1:notaport/0",
        "unknown-option": f"redis://127.0.0.1:{locked_server.port}/0?prefixx=app",
        "wrong-password": f"redis://:nope@127.0.0.1:{locked_server.port}/0",
        "no-password": f"redis://127.0.0.1:{locked_server.port}/0",
        "missing-db": f"redis://:pw@127.0.0.1:{locked_server.port}/99",
    }
    started = time.monotonic()
    try:
        with pytest.raises(error) as caught:
            async with Runtime([echo], store=urls[where]):
                pass
    finally:
        silent.close()
    assert time.monotonic() - started < 3
    assert "nope" not in str(caught.value) and ":pw@" not in str(caught.value)


async def test_a_redis_url_opens_the_redis_store(redis_url: str) -> None:
    async with Runtime([echo], store=redis_url) as rt:
        assert isinstance(rt.target.store, RedisStore)
        assert await runs.result((await workflows.start(echo, input={"a": 1})).run_id, timeout=5) == {"a": 1}
    assert isinstance(Runtime([echo]).stores.create("rediss://cache:6380/0"), RedisStore)


async def test_data_of_another_layout_is_refused(redis_server: RedisServer) -> None:
    client = aioredis.Redis(port=redis_server.port)
    await client.set("old:layout", "0")
    await client.aclose()
    with pytest.raises(UnsupportedSchemaVersion):
        async with Runtime([echo], store=redis_server.url(prefix="old")):
            pass


# -- a call sent twice takes effect once ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def relay(port: int) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP relay to 127.0.0.1:``port``; setting the event makes it drop every reply from Redis and
    close the client connections — after Redis applied what it was sent."""
    cut = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        try:
            while data := await reader.read(65536):
                if replies and cut.is_set():
                    break
                writer.write(data)
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if cut.is_set():
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        for task in (pipe(reader, upstream_writer, False), pipe(upstream_reader, writer, True)):
            tasks.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], cut
    finally:
        server.close()
        for task in tasks:
            task.cancel()


async def test_admissions_whose_replies_were_lost_are_sent_again_and_create_each_run_once(redis_server: RedisServer) -> None:
    async with relay(redis_server.port) as (port, cut):
        url = f"redis://127.0.0.1:{port}/0?prefix=relay{time.time_ns()}&timeout=5"
        store = RedisStore(url)
        await store.open(lambda keys: None)
        try:
            now = utc_now()
            news = [
                NewRun(f"run_twice{n}", "w", {"n": n}, f"key{n % 5}", now, None, NewEvent(0, "run_queued", {}, now))
                for n in range(40)
            ]
            cut.set()  # Redis gets the calls; their replies are lost with the connection
            pending = [asyncio.ensure_future(store.admit(new)) for new in news]
            await asyncio.sleep(0.3)
            cut.clear()  # the link connects again and sends the unanswered calls again
            admissions = await asyncio.gather(*pending)
            assert [a.created for a in admissions[:5]] == [True] * 5 and not any(a.created for a in admissions[5:])
            assert {a.record.run_id for a in admissions} == {f"run_twice{n}" for n in range(5)}
            assert len(await store.list(RunQuery(limit=100))) == 5
            assert store._link.reconnects >= 1  # type: ignore[union-attr]
        finally:
            await store.close()


# -- leases are judged by Redis's clock ---------------------------------------------------------------


async def test_heartbeats_are_dated_by_redis_not_by_the_hosts_clock(redis_url: str) -> None:
    store = RedisStore(redis_url)
    await store.open(lambda keys: None)
    try:
        now = time.time()
        await store.heartbeat(WorkerInfo("wkr_ahead", "far", 1, None, now + 3600))  # its clock is an hour fast
        await store.heartbeat(WorkerInfo("wkr_stale", "far", 2, None, now - 100))  # last heard of 100 s ago
        seen = {w.worker_id: w for w in await store.workers()}
        assert abs(seen["wkr_ahead"].heartbeat_at - time.time()) < 1  # fresh, not an hour from now
        assert 99 < time.time() - seen["wkr_stale"].heartbeat_at < 101
    finally:
        await store.close()


# -- retention ------------------------------------------------------------------------------------------


async def test_finished_runs_older_than_the_retention_are_removed_and_others_kept(redis_url: str) -> None:
    store = RedisStore(redis_url)
    await store.open(lambda keys: None)
    now = utc_now()
    for run_id, ended in (("run_old", now - timedelta(days=2)), ("run_recent", now), ("run_open", None)):
        await store.admit(NewRun(run_id, "w", None, run_id, now, None, NewEvent(0, "run_queued", {}, now)))
        if ended is not None:
            await store.finish(run_id, Outcome(RunStatus.COMPLETED, ended))
    await store.close()
    kept = RedisStore(redis_url + "&retention=1d")
    await kept.open(lambda keys: None)  # a store with a retention prunes when it opens, then every minute
    try:
        with anyio.fail_after(5):
            while await kept.get("run_old") is not None:
                await anyio.sleep(0.02)
        assert await kept.read("run_old", -1, 10) is None
        assert await kept.get("run_recent") is not None and await kept.get("run_open") is not None
    finally:
        await kept.close()


def test_a_retention_takes_seconds_or_a_unit() -> None:
    assert RedisStore("redis://h?retention=90").retention == 90
    assert RedisStore("redis://h?retention=12h").retention == 12 * 3600
    assert RedisStore("redis://h?retention=7d").retention == 7 * 86400
    assert RedisStore("redis://h").retention is None
    for bad in ("0", "-1d", "soon", "7w"):
        with pytest.raises(ConfigurationError):
            RedisStore(f"redis://h?retention={bad}")


# -- sizing ---------------------------------------------------------------------------------------------


async def test_a_finished_runs_stream_is_kept_at_its_size(redis_url: str, redis_server: RedisServer) -> None:
    async with Runtime([echo], store=redis_url):
        receipt = await workflows.start(echo, input={"a": 1})
        await runs.result(receipt.run_id, timeout=5)
    client = aioredis.Redis(port=redis_server.port)
    try:
        prefix = redis_url.split("prefix=")[1]
        assert await client.memory_usage(f"{prefix}:ev:{receipt.run_id}") < 2048  # Redis 7 starts a stream at 4 KB
    finally:
        await client.aclose()


# -- hearing other processes' changes ------------------------------------------------------------------


async def test_a_process_hears_of_the_runs_it_watches_only(redis_url: str) -> None:
    heard: list[str] = []
    listener = RedisStore(redis_url)
    await listener.open(lambda keys: heard.extend(keys))
    writer = RedisStore(redis_url)
    await writer.open(lambda keys: None)
    try:
        now = utc_now()
        first = NewEvent(0, "run_queued", {}, now)
        await writer.admit(NewRun("run_a", "w", None, None, now, "wkr", first))
        await writer.admit(NewRun("run_b", "w", None, None, now, "wkr", first))
        listener.interest("run_b", True)
        with anyio.fail_after(2):
            while "run_b" not in heard:  # the subscription is in place: readers look again
                await anyio.sleep(0.005)
        heard.clear()
        await writer.claim("run_a", "wkr")
        await writer.claim("run_b", "wkr")
        with anyio.fail_after(2):
            while "run_b" not in heard:
                await anyio.sleep(0.005)
        await anyio.sleep(0.05)
        assert "run_a" not in heard and READY not in heard
    finally:
        await writer.close()
        await listener.close()


async def test_a_worker_in_another_runtime_takes_runs_admitted_by_an_admit_only_runtime(redis_url: str) -> None:
    async with Runtime([echo], store=redis_url, execute=False) as web:
        receipt = await workflows.start(echo, input={"from": "web"}, runtime=web)
        await anyio.sleep(0.2)
        assert (await runs.get(receipt.run_id, runtime=web)).status == RunStatus.QUEUED  # nobody executes it
        async with Runtime([echo], target=LocalTarget(redis_url, sweep_interval=0.1)):
            started = time.monotonic()
            assert await runs.result(receipt.run_id, timeout=5, runtime=web) == {"from": "web"}
            assert time.monotonic() - started < 1


@workflow(name="redis-slow", retries=1)
async def slow(ctx) -> int:  # type: ignore[no-untyped-def]
    await anyio.sleep(0.6)
    return ctx.attempt


async def test_a_run_whose_end_could_not_be_written_while_redis_was_away_is_taken_up_again(own_redis_server: RedisServer) -> None:
    url = own_redis_server.url(prefix="away") + "&connect_timeout=0.2&timeout=0.3"
    async with Runtime([slow], target=LocalTarget(RedisStore(url), sweep_interval=0.1)) as rt:
        receipt = await workflows.start(slow)
        with anyio.fail_after(5):
            while (await runs.get(receipt.run_id)).status != RunStatus.RUNNING:
                await anyio.sleep(0.01)
        own_redis_server.stop()
        await anyio.sleep(1.2)  # the attempt ended meanwhile; writing its end failed
        own_redis_server.start()
        with anyio.fail_after(10):
            assert await runs.result(receipt.run_id) == 1  # executed again: at least once, never lost
        assert (await runs.get(receipt.run_id)).recoveries == 1  # an interruption, not a second attempt
        types = [event.type async for event in runs.events(receipt.run_id)]
        assert types == ["run_queued", "run_start", "run_interrupted", "run_resume", "run_end"]
        assert rt.target._unsettled == set()  # type: ignore[attr-defined]


def test_events_the_scripts_write_have_the_wire_shape_of_event_json() -> None:
    when = utc_now()
    for run_id, type, data in [("run_01JZ8X4M2Q7C9T5N3V6B8K0W1D", "run_end", {"status": "completed", "note": "é \"q\""}),
                               ("custom-id_7", "signal_received", {})]:  # fmt: skip
        built = event_head(run_id) + "7" + event_mid(type, format_timestamp(when)) + dumps(data) + "}"
        assert built == event_json(run_id, NewEvent(7, type, data, when))


# -- recoveries, re-runs and the order of steps -------------------------------------------------------


def queued(run_id: str, *, minutes: int = 0, key: str | None = None, rerun_of: str | None = None,
           steps: tuple[tuple[str, str], ...] = (), owner: str | None = "wkr") -> NewRun:  # fmt: skip
    created = utc_now().replace(year=2030) + timedelta(minutes=minutes)
    return NewRun(run_id, "w", None, key, created, owner, NewEvent(0, "run_queued", {}, created), rerun_of=rerun_of, steps=steps)


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(url)
    await store.open(lambda keys: None)
    try:
        yield store
    finally:
        await store.close()


async def test_a_rerun_and_its_recoveries_are_stored_and_read_back(redis_url: str) -> None:
    async with opened(redis_url) as store:
        admission = await store.admit(queued("run_b", rerun_of="run_a"))
        assert (admission.record.rerun_of, admission.record.recoveries) == ("run_a", 0)
        stored = await store.get("run_b")
        assert stored is not None and (stored.rerun_of, stored.recoveries) == ("run_a", 0)
        assert [(r.run_id, r.rerun_of) for r in await store.list(RunQuery())] == [("run_b", "run_a")]


async def test_an_interrupted_run_is_claimed_again_in_the_same_attempt_with_a_recovery_counted(redis_url: str) -> None:
    async with opened(redis_url) as store:
        await store.admit(queued("run_i"))
        first = await store.claim("run_i", "wkr")
        assert first is not None and first.record.attempt == 1 and not first.resumed
        requeued = await store.requeue("run_i", None, interrupted=True)
        assert requeued is not None and requeued.status == RunStatus.QUEUED and requeued.recoveries == 1
        assert [r.run_id for r in (await store.take_ready("wkr2", {"w": Limits()}, 10)).records] == ["run_i"]
        again = await store.claim("run_i", "wkr2")
        assert again is not None and again.resumed and (again.record.attempt, again.record.recoveries) == (1, 1)
        await store.requeue("run_i", "wkr2")  # handed back without an interruption: a new attempt
        retried = await store.claim("run_i", "wkr2")
        assert retried is not None and not retried.resumed and (retried.record.attempt, retried.record.recoveries) == (2, 1)


async def test_steps_taken_over_at_admission_come_first_in_their_order_and_keep_it(redis_url: str) -> None:
    async with opened(redis_url) as store:
        taken = (("zeta", '"z"'), ("alpha", '{"é":"😀"}'), ("mid:1", "3"), ("", "null"))
        await store.admit(queued("run_s", rerun_of="run_a", steps=taken))
        await store.save_step("run_s", "beta", "4")
        await store.save_step("run_s", "alpha", '"second save"')  # the first save of a name wins
        await store.save_step("run_s", "aardvark", "5")
        assert list((await store.load_steps("run_s")).items()) == [*taken, ("beta", "4"), ("aardvark", "5")]


async def test_thousands_of_steps_taken_over_go_in_one_admission(redis_url: str) -> None:
    async with opened(redis_url) as store:
        taken = tuple((f"step-{n:05d}"[::-1], str(n)) for n in range(20_000))  # past a script's stack of arguments
        await store.admit(queued("run_many", steps=taken))
        assert list((await store.load_steps("run_many")).items()) == list(taken)


async def test_an_admission_that_creates_nothing_stores_no_steps(redis_url: str) -> None:
    async with opened(redis_url) as store:
        await store.admit(queued("run_k1", key="once"))
        admission = await store.admit(queued("run_k2", key="once", steps=(("a", "1"),)))
        assert not admission.created and admission.record.run_id == "run_k1"
        assert await store.load_steps("run_k2") == {} and await store.load_steps("run_k1") == {}


async def test_list_by_rerun_of_pages_newest_first_and_combines_with_the_other_filters(redis_url: str) -> None:
    async with opened(redis_url) as store:
        for n in range(5):
            await store.admit(queued(f"run_r{n}", minutes=n, rerun_of="run_a"))
        await store.admit(queued("run_other", minutes=9, rerun_of="run_z"))
        await store.claim("run_r3", "wkr")
        pages, after = [], None
        while page := await store.list(RunQuery(rerun_of="run_a", limit=2, after=after)):
            pages.append([r.run_id for r in page])
            after = (page[-1].created_at, page[-1].run_id)
        assert pages == [["run_r4", "run_r3"], ["run_r2", "run_r1"], ["run_r0"]]
        running = await store.list(RunQuery(rerun_of="run_a", status=RunStatus.RUNNING))
        assert [r.run_id for r in running] == ["run_r3"]
        assert await store.list(RunQuery(rerun_of="run_a", workflow="other")) == []
        child = queued("run_child", minutes=20, rerun_of="run_a")
        await store.admit(dataclasses.replace(child, parent_run_id="run_parent"))
        both = await store.list(RunQuery(rerun_of="run_a", parent="run_parent"))
        assert [r.run_id for r in both] == ["run_child"] and await store.list(RunQuery(rerun_of="run_z", parent="run_parent")) == []


async def test_pruning_a_rerun_removes_its_index_entry_and_its_step_order(redis_url: str, redis_server: RedisServer) -> None:
    prefix = redis_url.split("prefix=")[1]
    async with opened(redis_url) as store:
        await store.admit(queued("run_p", rerun_of="run_a", steps=(("a", "1"),)))
        await store.save_step("run_p", "b", "2")
        await store.finish("run_p", Outcome(RunStatus.COMPLETED, utc_now().replace(year=2031)))
        client = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            assert await client.exists(f"{prefix}:runs:rr:run_a", f"{prefix}:steporder:run_p") == 2
            assert await store.prune(utc_now().replace(year=2032)) == 1
            assert await client.keys(f"{prefix}:*run_p*") == [] and await client.exists(f"{prefix}:runs:rr:run_a") == 0
        finally:
            await client.aclose()
        assert await store.list(RunQuery(rerun_of="run_a")) == []


async def test_runs_and_steps_stored_before_this_layout_change_read_with_defaults(redis_url: str, redis_server: RedisServer) -> None:
    prefix = redis_url.split("prefix=")[1]
    async with opened(redis_url) as store:
        await store.admit(queued("run_old"))
        client = aioredis.Redis(port=redis_server.port)
        try:  # as an earlier release wrote them: no recoveries, no re-run, steps in a hash alone
            await client.hset(f"{prefix}:steps:run_old", mapping={"x": "1", "y": "2"})
            await store.save_step("run_old", "z", "3")
        finally:
            await client.aclose()
        record = await store.get("run_old")
        assert record is not None and (record.recoveries, record.rerun_of) == (0, None)
        steps = await store.load_steps("run_old")
        assert steps == {"x": "1", "y": "2", "z": "3"} and list(steps)[0] == "z"  # the ordered ones first


async def test_a_layout_key_of_another_kind_is_a_configuration_error_not_an_outage(redis_url: str, redis_server: RedisServer) -> None:
    from flue_core.cli.exits import Exit, exit_code

    prefix = redis_url.split("prefix=")[1]
    client = aioredis.Redis(port=redis_server.port)
    await client.rpush(f"{prefix}:layout", "not", "ours")
    await client.aclose()
    with pytest.raises(ConfigurationError) as caught:
        async with Runtime([echo], store=redis_url):
            pass
    assert not isinstance(caught.value, UnsupportedSchemaVersion) and f"{prefix}:layout is a list" in str(caught.value)
    assert exit_code(caught.value) == Exit.CONFIG  # the command line's 78, not 69

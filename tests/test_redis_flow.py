"""Flow control on the Redis store, operation by operation: priority order, per-key concurrency and
rate limits (held across connections, without reading a saturated key's runs), debounced starts
folding into one run, and the new record fields and list filters. Real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from flue_core.flow.limits import Limits
from flue_core.models import RunStatus, format_timestamp, utc_now
from flue_core.store import NewEvent, NewRun, Outcome, RunQuery
from flue_node_like import RedisStore
from flue_node_like.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def new_run(
    run_id: str,
    *,
    workflow: str = "w",
    at: datetime | None = None,
    owner: str | None = None,
    start_at: datetime | None = None,
    input: object = None,
    priority: int = 0,
    concurrency_key: str | None = None,
    rate_key: str | None = None,
    debounce_key: str | None = None,
) -> NewRun:
    created = at or utc_now()
    return NewRun(
        run_id, workflow, input, None, created, owner, NewEvent(0, "run_queued", {}, created), start_at=start_at,
        priority=priority, concurrency_key=concurrency_key, rate_key=rate_key, debounce_key=debounce_key,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(url)
    await store.open(lambda keys: None)
    try:
        yield store
    finally:
        await store.close()


async def ids(store: RedisStore, owner: str, limits: dict[str, Limits], limit: int = 10, **kwargs: object) -> list[str]:
    return [record.run_id for record in (await store.take_ready(owner, limits, limit, **kwargs)).records]  # type: ignore[arg-type]


async def test_records_carry_priority_and_the_flow_control_keys(redis_url: str) -> None:
    async with opened(redis_url) as store:
        run = new_run("run_a", priority=7, concurrency_key="tenant-1", rate_key="", debounce_key=None)
        admitted = (await store.admit(run)).record
        stored = await store.get("run_a")
        assert admitted == stored == run.record()
        assert stored is not None and (stored.priority, stored.concurrency_key, stored.rate_key) == (7, "tenant-1", "")
        plain = (await store.admit(new_run("run_b"))).record
        assert (plain.priority, plain.concurrency_key, plain.rate_key, plain.debounce_key) == (0, None, None, None)
        (taken,) = (await store.take_ready("wkr", {"w": Limits()}, 1)).records
        assert taken.run_id == "run_a" and taken.concurrency_key == "tenant-1" and taken.priority == 7


async def test_higher_priority_goes_first_then_the_oldest(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        await store.admit(new_run("run_old", at=now))
        await store.admit(new_run("run_low", at=now - timedelta(minutes=5), priority=-3))
        await store.admit(new_run("run_high", at=now + timedelta(seconds=1), priority=5, concurrency_key="k"))
        await store.admit(new_run("run_new", at=now + timedelta(seconds=2)))
        assert await ids(store, "wkr", {"w": Limits()}) == ["run_high", "run_old", "run_new", "run_low"]


async def test_concurrency_holds_per_key_across_connections_and_other_keys_go_on(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as one, opened(redis_url) as two:
        for i in range(3):
            await one.admit(new_run(f"run_a{i}", at=now + timedelta(seconds=i), concurrency_key="a"))
        await one.admit(new_run("run_b0", at=now + timedelta(seconds=5), concurrency_key="b"))
        await one.admit(new_run("run_n0", at=now + timedelta(seconds=6)))
        limits = {"w": Limits(concurrency=1)}
        assert await ids(one, "wkr1", limits) == ["run_a0", "run_b0", "run_n0"]
        assert await ids(two, "wkr2", limits) == []  # every bucket has its one run held
        assert await one.claim("run_a0", "wkr1") is not None
        await one.finish("run_a0", Outcome(RunStatus.COMPLETED, utc_now()))
        assert await ids(two, "wkr2", limits) == ["run_a1"]


async def test_concurrency_counts_runs_taken_by_the_same_call(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        for i in range(5):
            await store.admit(new_run(f"run_{i}", at=now + timedelta(seconds=i), concurrency_key="k" if i % 2 else None))
        assert await ids(store, "wkr", {"w": Limits(concurrency=2)}) == ["run_0", "run_1", "run_2", "run_3"]


async def test_racing_takes_on_two_connections_never_exceed_the_limit(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as one, opened(redis_url) as two:
        for i in range(40):
            await one.admit(new_run(f"run_{i:02}", at=now + timedelta(milliseconds=i), concurrency_key=f"k{i % 4}"))
        limits = {"w": Limits(concurrency=3)}
        takes = [store.take_ready(f"wkr{n}", limits, 5) for n in range(6) for store in (one, two)]
        taken = [record for result in await asyncio.gather(*takes) for record in result.records]
        assert len(taken) == len({record.run_id for record in taken}) == 12
        assert sorted(record.concurrency_key or "" for record in taken) == sorted(["k0", "k1", "k2", "k3"] * 3)


async def test_a_saturated_key_at_the_head_of_the_pool_is_skipped_without_reading_its_runs(
    redis_url: str, redis_server: RedisServer
) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        await store.admit(new_run("run_busy", at=now, concurrency_key="hot", owner="wkr"))
        for i in range(3000):
            await store.admit(new_run(f"run_hot{i:04}", at=now + timedelta(milliseconds=i), concurrency_key="hot"))
        await store.admit(new_run("run_cold", at=now + timedelta(seconds=10), concurrency_key="cold"))
        await store.admit(new_run("run_plain", at=now + timedelta(seconds=11)))
        client = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            await client.config_resetstat()
            assert await ids(store, "wkr", {"w": Limits(concurrency=1)}) == ["run_cold", "run_plain"]
            stats = await client.info("commandstats")
        finally:
            await client.aclose()
        assert stats["cmdstat_evalsha"]["usec_per_call"] < 1000  # reading 3,000 runs costs several ms


async def test_a_rate_limit_holds_first_starts_and_says_when_to_look_again(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as one, opened(redis_url) as two:
        for i in range(4):
            await one.admit(new_run(f"run_{i}", at=now + timedelta(milliseconds=i)))
        limits = {"w": Limits(rate=2, per=60)}
        first = await one.take_ready("wkr1", limits, 10)
        assert [r.run_id for r in first.records] == ["run_0", "run_1"]
        assert first.retry_at is not None and abs((first.retry_at - utc_now()).total_seconds() - 60) < 5
        claimed = await one.claim("run_0", "wkr1")
        assert claimed is not None and claimed.record.started_at is not None
        second = await two.take_ready("wkr2", limits, 10)
        assert second.records == []
        expected = claimed.record.started_at + timedelta(seconds=60)
        assert second.retry_at is not None and abs((second.retry_at - expected).total_seconds()) < 0.01
        assert (await two.take_ready("wkr2", {"w": Limits()}, 10)).retry_at is None


async def test_a_rate_limit_is_per_rate_key_and_spares_resumed_runs(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        await store.admit(new_run("run_started", at=now - timedelta(minutes=1), owner="wkr"))
        await store.claim("run_started", "wkr")
        await store.requeue("run_started", None, interrupted=True)  # back in the pool, started once
        await store.admit(new_run("run_x0", at=now, rate_key="x"))
        await store.admit(new_run("run_x1", at=now + timedelta(seconds=1), rate_key="x"))
        await store.admit(new_run("run_y0", at=now + timedelta(seconds=2), rate_key="y"))
        limits = {"w": Limits(rate=1, per=60)}
        taken = await store.take_ready("wkr", limits, 10)
        assert sorted(r.run_id for r in taken.records) == ["run_started", "run_x0", "run_y0"]
        assert taken.retry_at is not None


async def test_a_run_taken_and_handed_back_unstarted_no_longer_counts_against_the_rate(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        await store.admit(new_run("run_0", at=now))
        await store.admit(new_run("run_1", at=now + timedelta(seconds=1)))
        limits = {"w": Limits(rate=1, per=60, concurrency=5)}
        assert await ids(store, "wkr", limits) == ["run_0"]
        await store.admit(new_run("run_busy", at=now, owner="wkr"))
        assert await store.claim("run_busy", "wkr") is not None
        assert await store.claim("run_0", "wkr", limit=1) is None  # refused: back to the pool
        assert await ids(store, "wkr", {"w": Limits(rate=2, per=60)}) == ["run_0"]  # run_busy counts


async def test_claim_limit_counts_running_runs_of_the_same_concurrency_key(redis_url: str) -> None:
    async with opened(redis_url) as store:
        for run_id, key in (("run_a", "a"), ("run_a2", "a"), ("run_b", "b"), ("run_n", None), ("run_n2", None)):
            await store.admit(new_run(run_id, owner="wkr", concurrency_key=key))
        assert await store.claim("run_a", "wkr", limit=1) is not None
        assert await store.claim("run_b", "wkr", limit=1) is not None
        assert await store.claim("run_n", "wkr", limit=1) is not None
        assert await store.claim("run_a2", "wkr", limit=1) is None
        assert await store.claim("run_n2", "wkr", limit=1) is None
        assert await ids(store, "wkr2", {"w": Limits()}) == ["run_a2", "run_n2"]


async def test_only_takes_just_those_runs_within_their_limits(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        for i in range(3):
            await store.admit(new_run(f"run_{i}", at=now + timedelta(seconds=i), concurrency_key="k", priority=i))
        limits = {"w": Limits(concurrency=1)}
        assert await ids(store, "wkr", limits, only=["run_0", "run_1"]) == ["run_1"]
        assert await ids(store, "wkr", limits) == []


async def test_debounced_starts_fold_into_the_pending_run(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        first = await store.admit(new_run("run_1", at=now, start_at=now + timedelta(seconds=5), input=1, debounce_key="d"))
        assert first.created and first.record.waiting_for is not None and first.record.waiting_for.kind == "debounce"
        later = now + timedelta(seconds=8)
        folded = await store.admit(new_run("run_2", at=now, start_at=later, input=2, debounce_key="d"))
        assert not folded.created and folded.record.run_id == "run_1"
        assert (folded.record.input, folded.record.wake_at) == (2, later) and await store.get("run_2") is None
        assert await store.next_wake() == later
        page = await store.read("run_1", -1, 10)
        assert page is not None and [e.parse().type for e in page.events] == ["run_queued", "run_debounced"]
        assert page.events[1].parse().data == {"input": 2, "startAt": format_timestamp(later)}
        assert await store.wake_due(later) == 1
        again = await store.admit(new_run("run_3", at=now, start_at=later, input=3, debounce_key="d"))
        assert again.created  # the first one's window closed


async def test_racing_debounced_starts_on_two_connections_make_one_run(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as one, opened(redis_url) as two:
        starts = [
            store.admit(new_run(f"run_{i}", at=now, start_at=now + timedelta(seconds=30), input=i, debounce_key="d"))
            for i, store in enumerate([one, two] * 5)
        ]
        admissions = await asyncio.gather(*starts)
        assert sum(a.created for a in admissions) == 1
        assert len({a.record.run_id for a in admissions}) == 1
        assert len(await one.list(RunQuery(workflow="w"))) == 1


async def test_list_filters_by_keys_and_start_time(redis_url: str) -> None:
    now = utc_now()
    async with opened(redis_url) as store:
        await store.admit(new_run("run_a", at=now, owner="wkr", concurrency_key="c1", rate_key="r1"))
        await store.admit(new_run("run_b", at=now + timedelta(seconds=1), concurrency_key="c1", rate_key="r2"))
        await store.admit(new_run("run_c", at=now + timedelta(seconds=2), workflow="v", concurrency_key="c1"))
        claimed = await store.claim("run_a", "wkr")
        assert claimed is not None and claimed.record.started_at is not None
        async def listed(query: RunQuery) -> list[str]:
            return [record.run_id for record in await store.list(query)]

        assert await listed(RunQuery(concurrency_key="c1")) == ["run_c", "run_b", "run_a"]
        assert await listed(RunQuery(concurrency_key="c1", workflow="w")) == ["run_b", "run_a"]
        assert await listed(RunQuery(rate_key="r2")) == ["run_b"]
        before = claimed.record.started_at - timedelta(milliseconds=1)
        assert await listed(RunQuery(started_after=before)) == ["run_a"]
        assert await listed(RunQuery(started_after=claimed.record.started_at)) == []


async def test_what_a_queued_run_waits_for_is_read_without_walking_the_workflows_finished_runs(
    redis_url: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two lists flue_core.flow.why makes on every read of a queued run (running runs of a
    concurrency key; runs of a rate key started in the window) read the runs that match, not the
    8,000 of the same keys that started and ended an hour ago (it counts the runs the scripts read)."""
    now = utc_now()
    past = now - timedelta(hours=1)
    async with opened(redis_url) as store:
        import flue_node_like.redis_store as redis_store

        monkeypatch.setattr(redis_store, "utc_now", lambda: past)  # the old runs' starts
        for batch in range(0, 8_000, 500):
            old = [f"run_old{i:05}" for i in range(batch, batch + 500)]
            runs = [new_run(run_id, at=past, owner="wkr", concurrency_key="c", rate_key="r") for run_id in old]
            await asyncio.gather(*(store.admit(run) for run in runs))
            await asyncio.gather(*(store.claim(run_id, "wkr") for run_id in old))
            ended = Outcome(RunStatus.COMPLETED, past)
            await asyncio.gather(*(store.finish(run_id, ended) for run_id in old))
        monkeypatch.undo()
        for run_id in ("run_new1", "run_new2"):
            await store.admit(new_run(run_id, at=now, owner="wkr", concurrency_key="c", rate_key="r"))
            await store.claim(run_id, "wkr")
        await store.admit(new_run("run_other", at=now, owner="wkr", concurrency_key="other", rate_key="r"))
        await store.claim("run_other", "wkr")
        await store.admit(new_run("run_waiting", at=now, concurrency_key="c", rate_key="r"))
        client = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            await client.config_resetstat()
            running = RunQuery(workflow="w", status=RunStatus.RUNNING, concurrency_key="c", limit=3)
            assert [r.run_id for r in await store.list(running)] == ["run_new2", "run_new1"]
            started = RunQuery(workflow="w", rate_key="r", started_after=now - timedelta(minutes=1), limit=5)
            assert [r.run_id for r in await store.list(started)] == ["run_other", "run_new2", "run_new1"]
            paged = RunQuery(workflow="w", rate_key="r", started_after=now - timedelta(minutes=1), after=(now, "run_new2"))
            assert [r.run_id for r in await store.list(paged)] == ["run_new1"]
            stats = await client.info("commandstats")
        finally:
            await client.aclose()
        read = stats.get("cmdstat_hmget", {}).get("calls", 0) + stats.get("cmdstat_hgetall", {}).get("calls", 0)
        assert read < 30  # a run read per match and per candidate, not 8,000
        # a started_after from before the first start these scripts indexed still finds every run
        before = RunQuery(workflow="w", rate_key="r", started_after=past - timedelta(days=1), limit=3)
        assert len(await store.list(before)) == 3
        assert len(await store.list(RunQuery(workflow="w", status=RunStatus.RUNNING))) == 3


async def test_every_index_a_list_may_read_gives_the_pages_a_filter_of_all_runs_gives(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever index list reads (the smallest, or the starts since a time), its pages are those of
    the filters applied to every run, in list order."""
    import flue_node_like.redis_store as redis_store

    now = utc_now()
    async with opened(redis_url) as store:
        first = now - timedelta(seconds=100)  # the first start indexed: later started_after may read the starts
        await store.admit(new_run("run_first", workflow="v", at=first, owner="wkr"))
        monkeypatch.setattr(redis_store, "utc_now", lambda: first)
        await store.claim("run_first", "wkr")
        for i in range(60):
            workflow, key, rate = ("w", "v")[i % 2], (None, "a", "b")[i % 3], (None, "x")[i % 5 == 0]
            at = now - timedelta(seconds=60 - i // 4)  # runs created in the same ms: ties by id
            await store.admit(new_run(f"run_{i:02}", workflow=workflow, at=at, owner="wkr", concurrency_key=key, rate_key=rate))
            if i % 4:
                started = now - timedelta(seconds=(i * 7) % 50)
                monkeypatch.setattr(redis_store, "utc_now", lambda started=started: started)
                await store.claim(f"run_{i:02}", "wkr")
                if i % 3 == 0:
                    await store.finish(f"run_{i:02}", Outcome(RunStatus.COMPLETED, started))
        monkeypatch.undo()
        everything = await store.list(RunQuery(limit=1000))
        assert len(everything) == 61
        for workflow in (None, "w"):
            for status in (None, RunStatus.RUNNING, RunStatus.COMPLETED):
                for key in (None, "a"):
                    for rate in (None, "x"):
                        for since in (None, now - timedelta(seconds=30), now - timedelta(seconds=200)):
                            expected = [
                                r.run_id for r in everything
                                if (workflow is None or r.workflow == workflow) and (status is None or r.status == status)
                                and (key is None or r.concurrency_key == key) and (rate is None or r.rate_key == rate)
                                and (since is None or (r.started_at is not None and r.started_at > since))
                            ]  # fmt: skip
                            pages: list[str] = []
                            after = None
                            while True:
                                query = RunQuery(
                                    workflow=workflow, status=status, concurrency_key=key, rate_key=rate,
                                    started_after=since, limit=4, after=after,
                                )  # fmt: skip
                                page = await store.list(query)
                                pages += [r.run_id for r in page]
                                if len(page) < 4:
                                    break
                                after = (page[-1].created_at, page[-1].run_id)
                            assert pages == expected, (workflow, status, key, rate, since)


async def test_a_rate_keys_starts_expire_once_its_window_and_a_margin_have_passed(
    redis_url: str, redis_server: RedisServer
) -> None:
    """A rate key seen once (a customer's) leaves no key behind for ever: its starts expire after the window."""
    prefix = redis_url.split("prefix=")[1]
    async with opened(redis_url) as store:
        await store.admit(new_run("run_taken", rate_key="customer-1"))
        await store.admit(new_run("run_direct", rate_key="customer-2", owner="wkr"))
        assert await ids(store, "wkr", {"w": Limits(rate=5, per=60)}) == ["run_taken"]  # the workflow is rated now
        client = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            taken = f"{prefix}:starts:1:w10:customer-1"
            assert 60_000 < await client.pttl(taken) <= 60_000 + 300_000
            await store.claim("run_taken", "wkr")
            await store.claim("run_direct", "wkr")
            assert await client.zscore(taken, "run_taken") not in (None, float("inf"))
            for key in (taken, f"{prefix}:starts:1:w10:customer-2"):
                assert 60_000 < await client.pttl(key) <= 60_000 + 300_000
        finally:
            await client.aclose()

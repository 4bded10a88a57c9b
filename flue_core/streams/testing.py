"""The contract suite of :class:`~flue_core.streams.store.StreamStore`: every backend passes it.

Subclass :class:`StreamStoreContract` in a test module and override ``make_store`` to return a
factory of unopened stores that take a ``clock`` (so expiry is tested without waiting)::

    class TestMyStreamStore(StreamStoreContract):
        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda clock: MyStreamStore(tmp_path / "streams.db", clock=clock)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

import pytest

from flue_core.errors import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerSequenceGap,
    StaleProducerEpoch,
    StreamClosed,
    StreamConflict,
    StreamGone,
    StreamNotFound,
    StreamSeqConflict,
)
from flue_core.streams.store import Append, Fork, NewStream, Producer, StreamStore

TEXT = "text/plain"
JSON = "application/json"


class Clock:
    """A clock the test moves: ``clock.advance(seconds)``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Notified:
    """The change listener: every path a store reported, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, paths: Iterable[str]) -> None:
        self.paths.extend(paths)


def text(data: str, **options: object) -> Append:
    return Append(data.encode(), content_type=TEXT, **options)  # type: ignore[arg-type]


async def content(store: StreamStore, path: str, after: int = -1) -> bytes:
    page = await store.read(path, after, 1000, 1 << 30)
    return b"".join(page.records)


class StreamStoreContract:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_store(self) -> Callable[[Clock], StreamStore]:
        raise NotImplementedError("Override `make_store` to return a factory of unopened stores taking a clock.")

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def notified(self) -> Notified:
        return Notified()

    @pytest.fixture
    async def store(
        self, make_store: Callable[[Clock], StreamStore], clock: Clock, notified: Notified
    ) -> AsyncIterator[StreamStore]:
        store = make_store(clock)
        await store.open(notified)
        try:
            yield store
        finally:
            await store.close()

    # -- creation --------------------------------------------------------------------------------------

    async def test_a_created_stream_holds_its_initial_data(self, store: StreamStore) -> None:
        created = await store.create("/a", NewStream(TEXT, data=b"hello"))
        assert created.created and created.meta.tail == 1 and created.meta.content_type == TEXT
        assert await content(store, "/a") == b"hello"

    async def test_creating_again_with_the_same_configuration_returns_the_stream(self, store: StreamStore) -> None:
        first = await store.create("/a", NewStream(JSON, ttl=60))
        again = await store.create("/a", NewStream("Application/JSON; charset=utf-8", ttl=60))
        assert not again.created and again.meta.stream_id == first.meta.stream_id

    @pytest.mark.parametrize(
        "other", [NewStream(JSON), NewStream(TEXT, ttl=5), NewStream(TEXT, expires_at=2e9), NewStream(TEXT, closed=True)]
    )
    async def test_creating_again_with_another_configuration_is_a_conflict(
        self, store: StreamStore, other: NewStream
    ) -> None:
        await store.create("/a", NewStream(TEXT))
        with pytest.raises(StreamConflict):
            await store.create("/a", other)

    async def test_a_stream_without_content_type_is_octet_stream(self, store: StreamStore) -> None:
        created = await store.create("/a", NewStream())
        assert created.meta.content_type == "application/octet-stream"

    async def test_a_stream_created_again_after_deletion_is_a_new_one(self, store: StreamStore) -> None:
        old = await store.create("/a", NewStream(TEXT, data=b"old"))
        await store.delete("/a")
        new = await store.create("/a", NewStream(TEXT, data=b"new"))
        assert new.created and new.meta.stream_id != old.meta.stream_id
        assert await content(store, "/a") == b"new"

    # -- appends and reads -----------------------------------------------------------------------------

    async def test_appends_take_consecutive_positions(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        tails = [(await store.append("/a", text(chunk))).meta.tail for chunk in ("x", "y", "z")]
        assert tails == [1, 2, 3]

    async def test_a_read_returns_records_strictly_after_a_position(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT, data=b"1"))
        for chunk in ("2", "3"):
            await store.append("/a", text(chunk))
        page = await store.read("/a", 1, 10, 1 << 20)
        assert page.records == [b"2", b"3"] and page.next == 3 and page.meta.tail == 3

    async def test_a_read_from_the_tail_returns_nothing(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT, data=b"1"))
        page = await store.read("/a", None, 10, 1 << 20)
        assert page.records == [] and page.next == 1

    async def test_an_empty_read_from_the_start_resumes_at_position_zero(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        assert (await store.read("/a", -1, 10, 1 << 20)).next == 0

    async def test_a_read_stops_at_its_record_limit_and_byte_budget(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        for chunk in ("aaaa", "bbbb", "cccc"):
            await store.append("/a", text(chunk))
        assert (await store.read("/a", -1, 2, 1 << 20)).records == [b"aaaa", b"bbbb"]
        assert (await store.read("/a", -1, 10, 6)).records == [b"aaaa"]
        assert (await store.read("/a", -1, 10, 0)).records == [b"aaaa"]  # the first record always fits

    async def test_an_append_with_another_content_type_is_refused(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        with pytest.raises(ContentTypeMismatch):
            await store.append("/a", Append(b"{}", content_type=JSON))
        await store.append("/a", Append(b"ok", content_type="TEXT/plain; charset=utf-8"))

    async def test_an_append_to_an_unknown_stream_is_not_found(self, store: StreamStore) -> None:
        with pytest.raises(StreamNotFound):
            await store.append("/nope", text("x"))

    async def test_an_empty_append_without_close_is_refused(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        with pytest.raises(InvalidStreamRequest):
            await store.append("/a", Append(b"", content_type=TEXT))

    # -- JSON mode -------------------------------------------------------------------------------------

    async def test_json_arrays_are_flattened_one_level_and_kept_as_written(self, store: StreamStore) -> None:
        await store.create("/j", NewStream(JSON, data=b'[{"a": 1}, [2, 3]]'))
        await store.append("/j", Append(b'"s"', content_type=JSON))
        page = await store.read("/j", -1, 10, 1 << 20)
        assert page.records == [b'{"a": 1},[2, 3]', b'"s"']

    async def test_an_empty_json_array_creates_an_empty_stream_but_is_refused_on_append(self, store: StreamStore) -> None:
        created = await store.create("/j", NewStream(JSON, data=b"[]"))
        assert created.meta.tail == 0
        with pytest.raises(InvalidStreamRequest):
            await store.append("/j", Append(b"[]", content_type=JSON))

    @pytest.mark.parametrize("body", [b"{ invalid json }", b"NaN", b"\xff", b"[1,]"])
    async def test_invalid_json_is_refused_and_changes_nothing(self, store: StreamStore, body: bytes) -> None:
        await store.create("/j", NewStream(JSON))
        with pytest.raises(InvalidStreamRequest):
            await store.append("/j", Append(body, content_type=JSON, producer=Producer("p", 0, 0)))
        assert (await store.append("/j", Append(b"1", content_type=JSON, producer=Producer("p", 0, 0)))).meta.tail == 1

    # -- closure -------------------------------------------------------------------------------------

    async def test_closing_with_a_final_append_is_one_step(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT, data=b"a"))
        closed = await store.append("/a", text("z", close=True))
        assert closed.meta.closed and closed.meta.tail == 2
        assert await content(store, "/a") == b"az"

    async def test_an_append_to_a_closed_stream_is_refused_with_its_final_offset(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT, data=b"a", closed=True))
        for refused in (text("more"), text("more", close=True)):
            with pytest.raises(StreamClosed) as caught:
                await store.append("/a", refused)
            assert caught.value.details["next_offset"] == "0000000000000000_0000000000000001"

    async def test_closing_a_closed_stream_again_changes_nothing(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT, data=b"a"))
        await store.append("/a", Append(close=True))
        again = await store.append("/a", Append(close=True))
        assert again.meta.closed and again.meta.tail == 1

    # -- writers -------------------------------------------------------------------------------------

    async def test_stream_seq_must_grow_byte_wise(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("1", seq="09"))
        await store.append("/a", text("2", seq="10"))
        for stale in ("10", "09", "1", "0"):
            with pytest.raises(StreamSeqConflict):
                await store.append("/a", text("x", seq=stale))

    async def test_a_producer_appends_in_sequence_and_retries_are_duplicates(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        for seq in range(3):
            assert (await store.append("/a", text(f"m{seq}", producer=Producer("p", 0, seq)))).producer_seq == seq
        retry = await store.append("/a", text("m1", producer=Producer("p", 0, 1)))
        assert retry.duplicate and retry.producer_seq == 2
        assert await content(store, "/a") == b"m0m1m2"

    async def test_a_new_producer_must_start_at_seq_zero(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        with pytest.raises(ProducerSequenceGap) as caught:
            await store.append("/a", text("x", producer=Producer("p", 0, 3)))
        assert caught.value.details == {"expected_seq": 0, "received_seq": 3}

    async def test_a_producer_skipping_a_seq_is_refused(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("x", producer=Producer("p", 0, 0)))
        with pytest.raises(ProducerSequenceGap) as caught:
            await store.append("/a", text("x", producer=Producer("p", 0, 2)))
        assert caught.value.details == {"expected_seq": 1, "received_seq": 2}

    async def test_an_older_producer_epoch_is_fenced_off(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("x", producer=Producer("p", 2, 0)))
        with pytest.raises(StaleProducerEpoch) as caught:
            await store.append("/a", text("zombie", producer=Producer("p", 1, 1)))
        assert caught.value.details == {"current_epoch": 2}

    async def test_a_new_producer_epoch_must_start_at_seq_zero(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("x", producer=Producer("p", 0, 0)))
        with pytest.raises(InvalidStreamRequest):
            await store.append("/a", text("x", producer=Producer("p", 1, 5)))
        assert (await store.append("/a", text("y", producer=Producer("p", 1, 0)))).producer_seq == 0

    async def test_producers_are_independent(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        for producer in ("p", "q"):
            assert not (await store.append("/a", text(producer, producer=Producer(producer, 0, 0)))).duplicate

    async def test_a_producer_retry_is_a_duplicate_before_stream_seq_is_checked(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("x", seq="a", producer=Producer("p", 0, 0)))
        assert (await store.append("/a", text("x", seq="a", producer=Producer("p", 0, 0)))).duplicate

    async def test_repeating_the_producer_request_that_closed_the_stream_is_a_duplicate(self, store: StreamStore) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("end", close=True, producer=Producer("p", 0, 0)))
        repeat = await store.append("/a", text("other body", close=True, producer=Producer("p", 0, 0)))
        assert repeat.duplicate and repeat.meta.closed
        with pytest.raises(StreamClosed):
            await store.append("/a", text("end", close=True, producer=Producer("q", 0, 0)))
        assert await content(store, "/a") == b"end"

    # -- forks ---------------------------------------------------------------------------------------

    async def test_a_fork_inherits_its_source_up_to_the_fork_offset(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"A"))
        await store.append("/s", text("B"))
        fork = await store.create("/f", NewStream(fork=Fork("/s", offset=1)))
        assert fork.meta.tail == 1 and fork.meta.content_type == TEXT
        await store.append("/f", text("C"))
        await store.append("/s", text("D"))
        assert await content(store, "/f") == b"AC"
        assert await content(store, "/s") == b"ABD"
        assert await content(store, "/f", after=1) == b"C"

    async def test_a_fork_without_offset_forks_at_the_source_tail(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"A"))
        await store.create("/f", NewStream(TEXT, fork=Fork("/s")))
        await store.append("/s", text("B"))
        assert await content(store, "/f") == b"A"

    async def test_forks_of_forks_read_through_the_chain(self, store: StreamStore) -> None:
        await store.create("/l0", NewStream(TEXT, data=b"X"))
        await store.create("/l1", NewStream(fork=Fork("/l0")))
        await store.append("/l1", text("Y"))
        await store.create("/l2", NewStream(fork=Fork("/l1")))
        await store.append("/l2", text("Z"))
        await store.append("/l1", text("1"))
        assert [await content(store, p) for p in ("/l0", "/l1", "/l2")] == [b"X", b"XY1", b"XYZ"]
        page = await store.read("/l2", -1, 2, 1 << 20)  # the limit holds across the chain
        assert page.records == [b"X", b"Y"] and page.next == 2

    async def test_a_sub_offset_takes_a_prefix_of_the_next_record(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"first"))
        await store.append("/s", text("second"))
        fork = await store.create("/f", NewStream(fork=Fork("/s", offset=1, sub_offset=3), data=b"!"))
        assert fork.meta.tail == 3
        assert await content(store, "/f") == b"firstsec!"

    async def test_a_json_sub_offset_counts_messages(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(JSON, data=b'[{"a":1},{"b":2},{"c":3}]'))
        await store.create("/f", NewStream(fork=Fork("/s", offset=0, sub_offset=2)))
        assert (await store.read("/f", -1, 10, 1 << 20)).records == [b'{"a":1},{"b":2}']

    @pytest.mark.parametrize(
        "fork", [Fork("/s", offset=2), Fork("/s", offset=0, sub_offset=6), Fork("/s", offset=1, sub_offset=1)]
    )
    async def test_a_fork_point_past_the_source_is_refused(self, store: StreamStore, fork: Fork) -> None:
        await store.create("/s", NewStream(TEXT, data=b"hello"))
        with pytest.raises(InvalidStreamRequest):
            await store.create("/f", NewStream(fork=fork))

    async def test_a_fork_of_an_unknown_stream_is_not_found(self, store: StreamStore) -> None:
        with pytest.raises(StreamNotFound):
            await store.create("/f", NewStream(fork=Fork("/nope")))

    async def test_a_refused_fork_takes_no_hold_on_its_source(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"x"))
        with pytest.raises(ContentTypeMismatch):
            await store.create("/f", NewStream(JSON, fork=Fork("/s")))
        await store.delete("/s")
        with pytest.raises(StreamNotFound):  # removed, not soft-deleted
            await store.head("/s")

    async def test_a_fork_does_not_inherit_producer_state(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT))
        await store.append("/s", text("x", producer=Producer("p", 0, 0)))
        await store.create("/f", NewStream(fork=Fork("/s")))
        assert not (await store.append("/f", text("y", producer=Producer("p", 0, 0)))).duplicate

    async def test_creating_a_fork_again_is_idempotent_and_compares_its_fork_point(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"hello"))
        await store.create("/f", NewStream(fork=Fork("/s", offset=0, sub_offset=2)))
        assert not (await store.create("/f", NewStream(TEXT, fork=Fork("/s", offset=0, sub_offset=2)))).created
        with pytest.raises(StreamConflict):
            await store.create("/f", NewStream(fork=Fork("/s", offset=0, sub_offset=3)))

    # -- deletion --------------------------------------------------------------------------------------

    async def test_deleting_an_unknown_stream_is_not_found(self, store: StreamStore) -> None:
        with pytest.raises(StreamNotFound):
            await store.delete("/nope")

    async def test_a_deleted_source_with_forks_is_soft_deleted(self, store: StreamStore) -> None:
        await store.create("/s", NewStream(TEXT, data=b"kept"))
        await store.create("/f", NewStream(fork=Fork("/s")))
        await store.delete("/s")
        for operation in (store.head("/s"), store.read("/s", -1, 1, 1), store.append("/s", text("x")), store.delete("/s")):
            with pytest.raises(StreamGone):
                await operation
        for blocked in (store.create("/s", NewStream(TEXT)), store.create("/g", NewStream(fork=Fork("/s")))):
            with pytest.raises(StreamConflict):
                await blocked
        assert await content(store, "/f") == b"kept"

    async def test_deleting_the_last_fork_removes_soft_deleted_sources_up_the_chain(self, store: StreamStore) -> None:
        await store.create("/l0", NewStream(TEXT, data=b"root"))
        await store.create("/l1", NewStream(fork=Fork("/l0")))
        await store.create("/l2", NewStream(fork=Fork("/l1")))
        await store.delete("/l0")
        await store.delete("/l1")
        await store.delete("/l2")
        for path in ("/l0", "/l1", "/l2"):
            with pytest.raises(StreamNotFound):
                await store.head(path)
        assert (await store.create("/l0", NewStream(TEXT))).created

    # -- expiry --------------------------------------------------------------------------------------

    async def test_a_stream_expires_once_idle_for_its_ttl(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/a", NewStream(TEXT, ttl=2))
        clock.advance(1.9)
        await store.head("/a")
        clock.advance(0.1)
        with pytest.raises(StreamNotFound):
            await store.head("/a")

    async def test_reads_and_writes_renew_the_ttl_but_head_does_not(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/a", NewStream(TEXT, ttl=2))
        clock.advance(1.5)
        await store.read("/a", None, 1, 1)
        clock.advance(1.5)
        await store.append("/a", text("x"))
        clock.advance(1.5)
        await store.head("/a")
        clock.advance(0.5)
        with pytest.raises(StreamNotFound):
            await store.append("/a", text("x"))

    async def test_expires_at_is_absolute(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/a", NewStream(TEXT, expires_at=clock.now + 3))
        clock.advance(2)
        await store.append("/a", text("x"))
        clock.advance(1)
        with pytest.raises(StreamNotFound):
            await store.read("/a", -1, 1, 1)

    async def test_an_expired_stream_can_be_created_again(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/a", NewStream(TEXT, ttl=1, data=b"old"))
        clock.advance(1)
        assert (await store.create("/a", NewStream(JSON, data=b'["new"]'))).created

    async def test_an_expired_source_with_forks_is_soft_deleted(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/s", NewStream(TEXT, ttl=1, data=b"x"))
        await store.create("/f", NewStream(fork=Fork("/s"), ttl=60))
        clock.advance(1)
        with pytest.raises(StreamGone):
            await store.head("/s")
        assert await content(store, "/f") == b"x"

    async def test_a_fork_asking_no_expiry_keeps_its_sources(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/s", NewStream(TEXT, ttl=30))
        fork = await store.create("/f", NewStream(fork=Fork("/s")))
        assert fork.meta.ttl == 30
        other = await store.create("/g", NewStream(fork=Fork("/s"), expires_at=clock.now + 3600))
        assert other.meta.ttl is None and other.meta.expires_at == clock.now + 3600

    async def test_purging_reclaims_expired_streams(self, store: StreamStore, clock: Clock) -> None:
        await store.create("/a", NewStream(TEXT, ttl=1))
        await store.create("/b", NewStream(TEXT, expires_at=clock.now + 1))
        await store.create("/c", NewStream(TEXT))
        clock.advance(1)
        assert await store.purge_expired() == 2
        assert await store.purge_expired() == 0
        await store.head("/c")

    # -- notifications -------------------------------------------------------------------------------

    async def test_writes_notify_the_paths_they_change(self, store: StreamStore, notified: Notified) -> None:
        await store.create("/a", NewStream(TEXT))
        await store.append("/a", text("x"))
        await store.append("/a", Append(close=True))
        await store.delete("/a")
        assert notified.paths == ["/a"] * 4

    async def test_appends_to_a_source_do_not_notify_its_forks(self, store: StreamStore, notified: Notified) -> None:
        await store.create("/s", NewStream(TEXT))
        await store.create("/f", NewStream(fork=Fork("/s")))
        notified.paths.clear()
        await store.append("/s", text("x"))
        assert notified.paths == ["/s"]

    async def test_refused_writes_notify_nobody(self, store: StreamStore, notified: Notified) -> None:
        await store.create("/a", NewStream(TEXT, closed=True))
        notified.paths.clear()
        with pytest.raises(StreamClosed):
            await store.append("/a", text("x"))
        assert notified.paths == []

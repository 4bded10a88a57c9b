"""Connecting to Redis: URLs and their options, and every bad configuration as a typed error at once —
a malformed URL when the store is made, an unreachable or silent server, refused credentials and a
missing database when it opens — never a hang. Real redis-server processes, real sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from flue_core.errors import ConfigurationError, StoreUnavailable
from flue_node_like.redis_connection import RedisSettings, connect
from flue_node_like.redis_server import RedisServer, RedisServerMissing
from flue_node_like.redis_store import RedisStore
from flue_node_like.streams_redis import RedisStreamStore

pytestmark = pytest.mark.anyio
FAST = "connect_timeout=0.5&timeout=0.5"


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own that wants the password ``s3cret/pw``."""
    server = RedisServer(tmp_path / "redis", password="s3cret/pw")
    server.start()
    yield server
    server.kill()


# -- URLs ----------------------------------------------------------------------------------------------


def test_a_url_gives_host_port_db_credentials_and_prefix() -> None:
    settings = RedisSettings.from_url("rediss://ann:p%40ss@cache.internal:6380/3?prefix=billing&timeout=2.5")
    assert (settings.host, settings.port, settings.db, settings.tls) == ("cache.internal", 6380, 3, True)
    assert (settings.username, settings.password, settings.prefix, settings.timeout) == ("ann", "p@ss", "billing", 2.5)
    assert settings.key("ds", "paths") == "billing:ds:paths"


def test_defaults_are_port_6379_db_0_and_prefix_flue() -> None:
    settings = RedisSettings.from_url("redis://localhost")
    assert (settings.port, settings.db, settings.prefix, settings.tls) == (6379, 0, "flue", False)
    assert RedisSettings.from_url("redis://localhost?db=5").db == 5


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:6379",
        "localhost:6379",
        "redis://",
        "redis://localhost:99999",
        "redis://localhost:port",
        "redis://localhost/zero",
        "redis://localhost/-1",
        "redis://localhost?prefix=two%20words",
        "redis://localhost?prefix=",
        "redis://localhost?prefix=a&prefix=b",
        "redis://localhost?pool=3",
        "redis://localhost?timeout=0",
        "redis://localhost?connect_timeout=soon",
        "redis://localhost?max_connections=0",
        "redis://localhost?ssl_cert_reqs=none",
        "rediss://localhost?ssl_cert_reqs=sometimes",
    ],
)
def test_a_malformed_url_is_a_configuration_error_when_the_store_is_made(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStreamStore(url)


def test_errors_and_the_shown_url_never_contain_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisSettings.from_url("redis://ann:hunter2@localhost/x")
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    settings = RedisSettings.from_url("redis://ann:hunter2@localhost")
    assert "hunter2" not in settings.url and "hunter2" not in repr(settings)


#: A password with every reserved character a URL parser cuts at; no piece of it may ever be shown.
PIECES = ("sekrit", "pazz", "wurd", "lazt")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:sekrit/pazz@127.0.0.1:6379/0",
        "redis://:sekrit#pazz@127.0.0.1:6379/0",
        "redis://:sekrit?pazz@127.0.0.1:6379/0",
        "redis://ann:sekrit/pazz#wurd?lazt@cache:6380/1?prefix=app",
        "redis://:sekrit?timeout=pazz@127.0.0.1/0",
        "redis://:sekrit://pazz@127.0.0.1/0",
        "rediss://ann:sekrit@pazz@[::1/0",
        "redis://ann:sekrit/1234@127.0.0.1/0",
    ],
)
def test_a_password_with_unencoded_reserved_characters_is_refused_without_showing_it(
    url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    for make in (RedisSettings.from_url, RedisStreamStore, RedisStore):
        with pytest.raises(ConfigurationError) as caught:
            make(url)
        shown = f"{caught.value} {caught.value.details!r}"
        assert not [piece for piece in PIECES if piece in shown], shown
        assert "must be percent-encoded" in str(caught.value)
    from flue_core.cli import main

    assert main(["runs", "--store", url]) == 78
    said = capsys.readouterr()
    assert not [piece for piece in PIECES if piece in said.out + said.err + caplog.text]


def test_reserved_characters_percent_encoded_give_the_password_they_spell() -> None:
    settings = RedisSettings.from_url("redis://:sekrit%2Fpazz%23wurd%3Flazt%40x@127.0.0.1/0")
    assert settings.password == "sekrit/pazz#wurd?lazt@x" and "sekrit" not in settings.url


@pytest.mark.parametrize(
    "query", ["timeout=inf", "timeout=-inf", "timeout=nan", "connect_timeout=inf", "timeout=1e300", "retention=infd"]
)
def test_a_timeout_that_is_not_a_finite_number_of_seconds_is_refused(query: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisStore(f"redis://localhost/0?{query}")
    assert caught.value.details["option"] == query.split("=")[0]


@pytest.mark.parametrize("url", ["redis://localhost/2?db=3", "redis://localhost/2?db=2", "redis://localhost?db="])
def test_a_database_named_twice_or_not_at_all_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisSettings.from_url(url)


def test_a_database_is_named_by_the_path_or_the_option() -> None:
    assert RedisSettings.from_url("redis://localhost/2").db == RedisSettings.from_url("redis://localhost?db=2").db == 2
    assert RedisSettings.from_url("redis://localhost/").db == 0


async def test_refused_credentials_leave_the_password_out_of_the_logs(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    for make in (RedisStreamStore, RedisStore):
        store = make(f"redis://:sekrit%2Fpazz@127.0.0.1:{locked_server.port}/0?{FAST}")
        with pytest.raises(ConfigurationError) as caught:
            await store.open(lambda keys: None)
        assert not [piece for piece in PIECES if piece in str(caught.value) + caplog.text]


async def test_a_stream_layout_key_of_another_kind_is_a_configuration_error(redis_server: RedisServer) -> None:
    client = aioredis.Redis(port=redis_server.port)
    await client.rpush("clash:ds:layout", "not ours")
    await client.aclose()
    with pytest.raises(ConfigurationError) as caught:
        await open_store(redis_server.url(prefix="clash"))
    assert "WRONGTYPE" in str(caught.value) and "prefix" in str(caught.value)


# -- servers that cannot be used -------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


async def open_store(url: str) -> RedisStreamStore:
    store = RedisStreamStore(url)
    await store.open(lambda paths: None)
    return store


async def test_an_unreachable_server_is_store_unavailable_at_open_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"redis://127.0.0.1:{closed_port()}/0?{FAST}")
    assert time.monotonic() - started < 1 and caught.value.code == "store_unavailable"


async def silent_server(answer: bytes | None) -> asyncio.Server:
    """A TCP server on 127.0.0.1 that accepts and then says nothing (``answer`` ``None``) or answers
    whatever it is sent with ``answer`` (not Redis)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
            await reader.read()  # hold the connection until the client leaves
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["silent", "http"])
async def test_a_server_that_is_not_redis_is_store_unavailable_within_the_timeout(answer: bytes | None) -> None:
    server = await silent_server(answer)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await open_store(f"redis://127.0.0.1:{port}/0?{FAST}")
    finally:
        server.close()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("auth", [":wrong@", "bob:s3cret%2Fpw@", ""], ids=["wrong-password", "wrong-user", "none"])
async def test_refused_credentials_are_a_configuration_error_at_open(locked_server: RedisServer, auth: str) -> None:
    url = f"redis://{auth}127.0.0.1:{locked_server.port}/0"
    with pytest.raises(ConfigurationError) as caught:
        await open_store(url)
    assert "s3cret" not in str(caught.value)


async def test_the_right_password_percent_encoded_opens_the_store(locked_server: RedisServer) -> None:
    store = await open_store(f"redis://:s3cret%2Fpw@127.0.0.1:{locked_server.port}/0")
    await store.close()


async def test_a_database_the_server_does_not_have_is_a_configuration_error(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigurationError):
        await connect(RedisSettings.from_url(redis_server.url(db=99)))


async def test_a_store_that_failed_to_open_holds_no_connection(redis_server: RedisServer) -> None:
    store = RedisStreamStore(redis_server.url(db=99))
    with pytest.raises(ConfigurationError):
        await store.open(lambda paths: None)
    with pytest.raises(StoreUnavailable):
        await store.head("/a")


# -- the test harness itself -----------------------------------------------------------------------------


def test_a_missing_redis_server_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerMissing, match="apt-get install redis-server"):
        RedisServer(tmp_path)

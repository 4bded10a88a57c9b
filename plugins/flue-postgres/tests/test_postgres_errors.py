"""What a user can get wrong, and a server that is away: typed errors at open, never a driver's
exception, never the password."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points
from urllib.parse import quote

import anyio
import pytest

from flue_core import Runtime, workflow, workflows
from flue_core.errors import ConfigurationError, StoreUnavailable, UnsupportedSchemaVersion
from flue_postgres import PostgresStore, PostgresStreamStore
from flue_postgres.server import PostgresServer
from flue_postgres.testing import DATABASE

pytestmark = pytest.mark.anyio
SECRET = "s3cret-p@ss/word"
ENCODED = quote(SECRET, safe="")  # as a URL carries it


@workflow(name="pg-errors-noop")
async def noop(ctx) -> None:
    return None


async def opened(url: str) -> None:
    store = PostgresStore(url)
    await store.open(lambda keys: None)
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://me:{ENCODED}@localhost/db",
        f"postgres://me:{ENCODED}@localhost:notaport/db",
        f"postgres://me:{ENCODED}@localhost/db?schema=no-dashes",
        f"postgres://me:{ENCODED}@localhost/db?timeout=0",
        f"postgres://me:{ENCODED}@localhost/db?timeout=soon",
        f"postgres://me:{ENCODED}@localhost/db?pool=0",
        f"postgres://me:{ENCODED}@localhost/db?retention=-1",
        f"postgres://me:{ENCODED}@localhost/db?schema=a&schema=b",
    ],
)
def test_a_bad_url_is_a_configuration_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        PostgresStore(url)
    text = f"{raised.value} {raised.value.details}"
    assert "s3cret" not in text


async def test_a_wrong_password_is_a_configuration_error_that_hides_both_passwords(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(DATABASE, password=SECRET)
    with pytest.raises(ConfigurationError) as raised:
        await opened(url)
    text = f"{raised.value} {raised.value.details}"
    assert "credentials" in str(raised.value) and "s3cret" not in text and postgres_server.password not in text


async def test_a_database_that_does_not_exist_is_a_configuration_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(ConfigurationError, match="no such database"):
        await opened(postgres_server.url("no_such_database"))


async def test_a_server_that_cannot_be_reached_is_unavailable_within_the_connect_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    with anyio.fail_after(5), pytest.raises(StoreUnavailable):
        await opened(f"postgres://me:{ENCODED}@127.0.0.1:{port}/db?connect_timeout=1")


async def test_a_schema_written_by_another_version_is_refused(postgres_server: PostgresServer, postgres_url: str) -> None:
    await opened(postgres_url)
    schema = postgres_url.rsplit("schema=", 1)[1]
    postgres_server.execute(DATABASE, f"UPDATE \"{schema}\".meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(UnsupportedSchemaVersion, match="newer"):
        await opened(postgres_url)
    stream_store = PostgresStreamStore(postgres_url)
    with pytest.raises(UnsupportedSchemaVersion):
        await stream_store.open(lambda paths: None)


async def test_a_schema_holding_tables_that_are_not_flues_is_refused(postgres_server: PostgresServer) -> None:
    postgres_server.execute(DATABASE, "CREATE SCHEMA theirs; CREATE TABLE theirs.runs (id int)")
    with pytest.raises(ConfigurationError, match="not Flue's"):
        await opened(postgres_server.url(DATABASE, schema="theirs"))


async def test_a_user_without_the_privilege_to_create_the_schema_is_told_what_to_grant(postgres_server: PostgresServer) -> None:
    postgres_server.execute(DATABASE, f"CREATE ROLE limited LOGIN PASSWORD '{SECRET}'")
    url = f"postgres://limited:{ENCODED}@127.0.0.1:{postgres_server.port}/{DATABASE}?schema=limited_schema"
    with pytest.raises(ConfigurationError, match="grant CREATE") as raised:
        await opened(url)
    assert "s3cret" not in f"{raised.value} {raised.value.details}"


def test_the_store_is_found_through_its_entry_point() -> None:
    found = {entry.name: entry.value for entry in entry_points(group="flue")}
    assert found.get("postgres") == "flue_postgres.plugin"


async def test_a_runtime_given_a_postgres_url_keeps_its_runs_there(postgres_url: str) -> None:
    for scheme in ("postgres", "postgresql"):
        url = postgres_url.replace("postgres://", f"{scheme}://", 1)
        async with Runtime([noop], store=url) as rt:
            assert isinstance(rt.target.store, PostgresStore)
            receipt = await workflows.start(noop)
            assert (await rt.target.store.get(receipt.run_id)) is not None

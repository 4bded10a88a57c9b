"""Flue's run store and stream store in Postgres, installed as a plugin (``pip install flue-postgres``).

``Runtime(store="postgres://user@host/db")`` (or ``FLUE_STORE``, ``flue worker --store``) keeps runs
in Postgres, shared by every process on every host that opens the same URL;
``create_app(runtime, streams=PostgresStreamStore(url))`` serves general Durable Streams from it.
``docs/backends.md`` of the Flue repository walks through this package as the worked example of a
backend.
"""

from flue_postgres.settings import PostgresSettings
from flue_postgres.store import PostgresStore
from flue_postgres.streams import PostgresStreamStore

__all__ = ["PostgresSettings", "PostgresStore", "PostgresStreamStore"]

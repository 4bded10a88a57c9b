"""Registers the Postgres run store with Flue (entry point ``flue = postgres``): ``postgres://`` and
``postgresql://`` URLs, for ``Runtime(store=...)``, ``FLUE_STORE`` and ``flue worker --store``."""

from __future__ import annotations

from flue_core.hookspecs import hookimpl
from flue_core.target import StoreRegistry
from flue_postgres.settings import SCHEMES
from flue_postgres.store import PostgresStore


@hookimpl
def flue_register_stores(register: StoreRegistry) -> None:
    for scheme in SCHEMES:
        register(scheme, PostgresStore)

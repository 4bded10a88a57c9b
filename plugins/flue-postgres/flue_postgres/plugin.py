"""Registers the Postgres run store with Flue (entry point ``flue = postgres``): ``postgres://`` and
``postgresql://`` URLs, for ``Runtime(store=...)``, ``FLUE_STORE`` and ``flue worker --store``, and a
reader of their runs that writes nothing, for ``flue replay --store`` and ``flue runs export``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flue_core.hookspecs import hookimpl
from flue_core.target import StoreRegistry
from flue_postgres.settings import SCHEMES
from flue_postgres.store import PostgresStore

if TYPE_CHECKING:
    from flue_core.replay.history import HistoryReader


@hookimpl
def flue_register_stores(register: StoreRegistry) -> None:
    for scheme in SCHEMES:
        register(scheme, PostgresStore)


@hookimpl
def flue_history_reader(url: str) -> HistoryReader | None:
    """The runs of a ``postgres://`` URL, read through the store's read operations on connections the
    server keeps read-only, with nothing created or swept."""
    if url.split("://", 1)[0] not in SCHEMES:
        return None
    from flue_core.replay.store_histories import StoreHistories

    return StoreHistories.opening(lambda: _opened_for_reading(url), url)


async def _opened_for_reading(url: str) -> PostgresStore:
    store = PostgresStore(url)
    await store.open_for_reading()
    return store

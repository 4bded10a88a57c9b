"""Registers the local target and its stores with Flue (entry point ``flue = local``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flue_core.errors import ConfigurationError
from flue_core.hookspecs import hookimpl
from flue_core.store import RunStore
from flue_core.target import StoreRegistry, TargetRegistry
from flue_node_like.memory import MemoryStore
from flue_node_like.sqlite import SqliteStore
from flue_node_like.target import LocalTarget

if TYPE_CHECKING:
    from flue_core.replay.history import HistoryReader


@hookimpl
def flue_register_targets(register: TargetRegistry) -> None:
    register("local", LocalTarget, fallback=True)


@hookimpl
def flue_register_stores(register: StoreRegistry) -> None:
    register("memory", MemoryStore)
    register("sqlite", SqliteStore)
    register("redis", redis_store)
    register("rediss", redis_store)


def redis_store(url: str) -> RunStore:
    """A :class:`~flue_node_like.redis_store.RedisStore`, imported on first use (it needs the ``redis`` extra)."""
    try:
        from flue_node_like.redis_store import RedisStore
    except ModuleNotFoundError as missing:
        raise ConfigurationError(
            f"The Redis store needs the redis extra ({missing.name} is not installed): pip install 'flue[redis]'.",
            details={"missing": missing.name},
        ) from None
    return RedisStore(url)


@hookimpl
def flue_history_reader(url: str) -> HistoryReader | None:
    """Readers that write nothing: SQLite files opened read-only; memory stores (of this process);
    Redis through the store's read operations, without its retention sweep."""
    from flue_core.replay.store_histories import StoreHistories

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        from flue_node_like.sqlite_history import SqliteHistories

        return SqliteHistories(url)
    if scheme == "memory":
        return StoreHistories.opening(lambda: _opened(MemoryStore(url)), url)
    if scheme in ("redis", "rediss"):
        from flue_node_like.redis_history import open_for_reading

        return StoreHistories.opening(lambda: open_for_reading(url), url)
    return None


async def _opened(store: RunStore) -> RunStore:
    await store.open(lambda keys: None)
    return store

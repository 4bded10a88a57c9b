"""Registers the local target and its stores with Flue (entry point ``flue = local``)."""

from __future__ import annotations

from flue_core.errors import ConfigurationError
from flue_core.hookspecs import hookimpl
from flue_core.store import RunStore
from flue_core.target import StoreRegistry, TargetRegistry
from flue_node_like.memory import MemoryStore
from flue_node_like.sqlite import SqliteStore
from flue_node_like.target import LocalTarget


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

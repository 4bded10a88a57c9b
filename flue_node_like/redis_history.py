"""Opening a Redis run store for reading only (a replay check, an export of histories)."""

from __future__ import annotations

from flue_core.errors import ConfigurationError
from flue_node_like.redis_link import Link
from flue_node_like.redis_store import RedisStore


async def open_for_reading(url: str) -> RedisStore:
    """The Redis store of ``url``, opened without writing: no retention sweep, and refused before it
    would write its layout key (which opening an empty prefix does) when no runs were ever stored there."""
    store = RedisStore(url)
    store.retention = None
    link = Link(store.settings, "flue-history")
    await link.open()
    try:
        layout = await link.send("EXISTS", store.settings.prefix + ":layout")
    finally:
        await link.close()
    if not layout:
        raise ConfigurationError(f"No Flue runs were ever stored at {store.url}.", details={"store": store.url})
    await store.open(lambda keys: None)
    return store

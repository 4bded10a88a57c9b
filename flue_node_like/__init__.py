"""The local target: runs execute in this long-running process; stored in SQLite (default), Redis or memory.

The names below are loaded on first use, so that importing one module of this package (say
``flue_node_like.memory`` inside a Cloudflare Worker, where aiosqlite cannot run) does not import
the SQLite store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flue_node_like.memory import MemoryStore
    from flue_node_like.redis_store import RedisStore
    from flue_node_like.sqlite import SqliteStore
    from flue_node_like.target import LocalTarget

__all__ = ["LocalTarget", "MemoryStore", "RedisStore", "SqliteStore"]
_HOMES = {
    "LocalTarget": "flue_node_like.target",
    "MemoryStore": "flue_node_like.memory",
    "RedisStore": "flue_node_like.redis_store",
    "SqliteStore": "flue_node_like.sqlite",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

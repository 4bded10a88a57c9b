"""The local target: runs execute in this long-running process; stored in SQLite (default) or memory."""

from flue_node_like.memory import MemoryStore
from flue_node_like.sqlite import SqliteStore
from flue_node_like.target import LocalTarget

__all__ = ["LocalTarget", "MemoryStore", "SqliteStore"]

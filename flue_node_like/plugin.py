"""Registers the local target and its stores with Flue (entry point ``flue = local``)."""

from __future__ import annotations

from flue_core.hookspecs import hookimpl
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

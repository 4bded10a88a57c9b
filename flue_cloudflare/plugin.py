"""Registers the Cloudflare target with Flue (entry point ``flue = cloudflare``) and recognises a
Python Worker, so that a runtime built inside one selects it without being told."""

from __future__ import annotations

import importlib.util
import sys

from flue_core.hookspecs import hookimpl
from flue_core.target import TargetRegistry


@hookimpl
def flue_register_targets(register: TargetRegistry) -> None:
    from flue_cloudflare.target import CloudflareTarget

    register("cloudflare", CloudflareTarget)


@hookimpl
def flue_detect_target() -> str | None:
    return "cloudflare" if in_worker() else None


def in_worker() -> bool:
    """Whether this is a Python Worker: Pyodide (Emscripten) with the Workers runtime's modules."""
    return sys.platform == "emscripten" and importlib.util.find_spec("workers") is not None

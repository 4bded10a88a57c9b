"""What a Worker's imports pull in: nothing that needs threads, sockets or the host's SQLite.

Inside a Worker those libraries are not shipped (and could not run), so an import of one on the
import path of ``flue_core`` or ``flue_cloudflare`` would fail the Worker at load. Checked here in a
fresh interpreter on the host, where it is fast; ``test_workerd_smoke`` imports the same inside
workerd.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HOST_ONLY = [
    "aiosqlite",
    "sqlite3",
    "uvicorn",
    "redis",
    "httpx",
    "httpx_sse",
    "flue_node_like",
    "flue_cloudflare.devtools",
]


def loaded_after(statement: str) -> list[str]:
    check = f"import sys, json\n{statement}\nprint(json.dumps([m for m in {HOST_ONLY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "statement",
    [
        "import flue_core",
        "from flue_core import workflow, Runtime, workflows, runs, RunContext",
        "import flue_core.http",
        "import flue_cloudflare",
    ],
)
def test_the_worker_import_path_loads_no_host_only_library(statement: str) -> None:
    assert loaded_after(statement) == []


def test_the_cloudflare_target_is_registered_everywhere_and_selected_only_inside_a_worker() -> None:
    from flue_core import Runtime
    from flue_core.target import TargetRegistry

    runtime = Runtime([])
    registry = TargetRegistry()
    runtime.pm.hook.flue_register_targets(register=registry)
    assert {"cloudflare", "local"} <= set(registry.factories)
    assert runtime.target.name == "local"  # detection answers only inside a Python Worker

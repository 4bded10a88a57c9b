"""Measuring a peer in a process of its own (DBOS keeps global state and threads): run ``python -m
MODULE ARGS...`` from the project's root and read the JSON object it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent


def measure_in_child(module: str, *args: object) -> dict[str, Any]:
    """The last line ``python -m module args...`` prints, as JSON; its stderr tail if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", module, *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DBOS__APPVERSION": "bench"},
    )
    if done.returncode != 0:
        raise SystemExit(f"The measurement of {module} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

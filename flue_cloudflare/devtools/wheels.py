"""Fetch the wheels of a Worker's Python packages for its Pyodide, with pip, into the cache.

A package works in a Python Worker when PyPI has a pure wheel or one for its Pyodide's ABI
(:data:`~flue_cloudflare.devtools.python_version.WHEEL_PLATFORM`; pydantic_core publishes one). pip
resolves the set for that platform; with ``--platform pyodide_...`` instead it would pick a
placeholder ``pydantic_core 0.0.1``. The versions
are held by ``worker-constraints.txt`` beside this module: the set proven to import in workerd, so a
fresh machine fetches what the last one tested.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from flue_cloudflare.devtools.cache import Cache, digest
from flue_cloudflare.devtools.errors import VendoringFailed
from flue_cloudflare.devtools.ingredients import SDK_REQUIREMENT
from flue_cloudflare.devtools.python_version import PYODIDE_VERSION, pip_platform_args

PLATFORM_ARGS = pip_platform_args()
CONSTRAINTS = Path(__file__).resolve().parent / "worker-constraints.txt"
#: flue's own dependencies that a Worker neither can use nor needs: they run on threads or sockets
#: (aiosqlite, uvicorn) or serve the host-side client (httpx, httpx-sse, sniffio).
HOST_ONLY = frozenset({"aiosqlite", "uvicorn", "httpx", "httpx-sse", "sniffio"})
#: What a Worker needs that a host has anyway: the IANA time zone database (``zoneinfo`` finds none in
#: Pyodide, so cron schedules, even in UTC, need it).
WORKER_ONLY = ("tzdata",)


def flue_worker_requirements(distribution: str = "flue") -> list[str]:
    """The installed ``distribution``'s run-time requirements that belong in a Worker, plus the Workers
    SDK: the requirement strings of its metadata without extras and without :data:`HOST_ONLY`, plus
    :data:`WORKER_ONLY`."""
    kept = [SDK_REQUIREMENT, *WORKER_ONLY]
    for text in importlib.metadata.requires(distribution) or []:
        requirement, _, marker = text.partition(";")
        name = re.sub(r"[-_.]+", "-", re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0]).lower()
        if not marker.strip() and name not in HOST_ONLY:
            kept.append(requirement.strip())
    return kept


def download_wheels(cache: Cache, requirements: Sequence[str], *, constraints: Path | None = CONSTRAINTS) -> Path:
    """The folder of wheels resolving ``requirements`` for the Worker's Pyodide, downloaded unless the same
    requirement set (and constraints) was downloaded before."""
    wanted = sorted(set(requirements))
    key = digest([*PLATFORM_ARGS, *wanted, constraints if constraints else ""])

    def fetch(folder: Path) -> None:
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet"]
        command += [*PLATFORM_ARGS, "--dest", str(folder)]
        if constraints is not None:
            command += ["--constraint", str(constraints)]
        result = subprocess.run([*command, *wanted], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise VendoringFailed(
                f"pip could not fetch wheels for Pyodide {PYODIDE_VERSION} (exit {result.returncode}) for"
                f" {' '.join(wanted)}:\n{result.stderr[-3000:]}"
            )

    return cache.build("wheels", key, fetch)

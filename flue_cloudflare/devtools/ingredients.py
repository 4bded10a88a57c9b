"""The pinned ingredients, fetched from the registries into the cache.

- npm ``workerd`` and ``pyodide``, pinned exactly in ``npm/package.json`` and ``npm/package-lock.json``
  beside this module and installed with ``npm ci`` into the cache (the bundle layout is specific to
  these versions);
- Debian ``capnproto`` (the ``capnp`` tool), installed with ``apt-get`` when missing and possible;
- PyPI ``workers-runtime-sdk`` (the ``workers`` module), fetched with an application's wheels
  (:mod:`flue_cloudflare.devtools.wheels`).
"""

from __future__ import annotations

import filecmp
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flue_cloudflare.devtools.cache import Cache, digest
from flue_cloudflare.devtools.errors import IngredientUnavailable

WORKERD_VERSION = "1.20261117.1"
PYODIDE_VERSION = "314.0.6"
SDK_REQUIREMENT = "workers-runtime-sdk==1.9.5"
NPM_FILES = ("package.json", "package-lock.json")
PINNED_NPM = Path(__file__).resolve().parent / "npm"
_STAMP = ".flue-installed"


@dataclass(frozen=True)
class NodePackages:
    """Where the installed npm ingredients are."""

    workerd: Path
    """The workerd binary."""
    pyodide: Path
    """The folder holding ``pyodide.asm.mjs``, ``pyodide.asm.wasm`` and ``python_stdlib.zip``."""


def node_packages(cache: Cache) -> NodePackages:
    """Install (``npm ci``) the pinned npm packages into the cache unless the lock file is unchanged
    since the last install, and return where they are."""
    folder = cache.npm
    folder.mkdir(parents=True, exist_ok=True)
    for name in NPM_FILES:
        target = folder / name
        if not target.exists() or not filecmp.cmp(PINNED_NPM / name, target, shallow=False):
            shutil.copyfile(PINNED_NPM / name, target)
    stamp = folder / "node_modules" / _STAMP
    wanted = digest([folder / "package-lock.json"])
    if not stamp.is_file() or stamp.read_text() != wanted:
        _npm_ci(folder)
        stamp.write_text(wanted)
    packages = NodePackages(
        workerd=_workerd_binary(folder / "node_modules"), pyodide=folder / "node_modules" / "pyodide"
    )
    for needed in ("pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip"):
        if not (packages.pyodide / needed).is_file():
            raise IngredientUnavailable(f"npm pyodide@{PYODIDE_VERSION} installed without {needed}.")
    return packages


def _npm_ci(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise IngredientUnavailable(
            "npm is not installed: the workerd tooling installs npm workerd@"
            f"{WORKERD_VERSION} and pyodide@{PYODIDE_VERSION} with it. Install Node.js 20 or newer with"
            " npm (Debian: apt-get install nodejs npm)."
        )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise IngredientUnavailable(
            f"npm ci of workerd@{WORKERD_VERSION} and pyodide@{PYODIDE_VERSION} failed"
            f" (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )


def _workerd_binary(node_modules: Path) -> Path:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "windows"}.get(platform.system(), "")
    arch = {"x86_64": "64", "AMD64": "64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    suffix = ".exe" if system == "windows" else ""
    # The platform package holds the binary itself; workerd's postinstall only links it into
    # workerd/bin, and npm may be configured to skip install scripts.
    for candidate in (
        node_modules / "@cloudflare" / f"workerd-{system}-{arch}" / "bin" / f"workerd{suffix}",
        node_modules / "workerd" / "bin" / f"workerd{suffix}",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise IngredientUnavailable(
        f"npm workerd@{WORKERD_VERSION} installed no workerd binary for {platform.system()}"
        f" {platform.machine()} (looked for @cloudflare/workerd-{system}-{arch})."
    )


def capnp_tool() -> Path:
    """The ``capnp`` command, installed from Debian's ``capnproto`` with apt-get when it is missing
    and this process may do so (root with apt-get); otherwise a clear error saying how to get it."""
    found = shutil.which("capnp")
    if found:
        return Path(found)
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise IngredientUnavailable(
            "The Cap'n Proto tool `capnp` (0.9.2 or newer) is not installed; it encodes the Pyodide dev"
            " bundle. Install it as root with `apt-get install capnproto` (Debian, Ubuntu), with"
            " `brew install capnp` (macOS), or with your distribution's capnproto package."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", "capnproto"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run([apt, "update", "-q"], capture_output=True, text=True, env=env, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    found = shutil.which("capnp")
    if result.returncode != 0 or found is None:
        raise IngredientUnavailable(
            "`capnp` is missing and `apt-get install capnproto` failed"
            f" (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return Path(found)

"""The pinned ingredients, fetched from the registries into the cache.

- npm ``workerd``, ``pyodide`` and ``wrangler``, pinned exactly in ``npm/package.json`` and
  ``npm/package-lock.json`` beside this module and installed with ``npm ci`` into the cache (the
  bundle layout is specific to these versions; wrangler depends on the same workerd);
- a Node.js that wrangler runs on (>= 22.12): the host's ``node`` when it is new enough, else npm's
  ``node-linux-<arch>`` pinned in ``npm-node/`` (Linux only);
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
from flue_cloudflare.devtools.python_version import PYODIDE_VERSION

WORKERD_VERSION = "1.20261117.1"
WRANGLER_VERSION = "4.164.0"
#: The oldest Node.js wrangler runs on (its ``engines``), and the one fetched when the host's is older.
WRANGLER_NODE = (22, 12)
NODE_VERSION = "22.23.5"
SDK_REQUIREMENT = "workers-runtime-sdk==1.9.5"
NPM_FILES = ("package.json", "package-lock.json")
PINNED_NPM = Path(__file__).resolve().parent / "npm"
PINNED_NODE = Path(__file__).resolve().parent / "npm-node"
_STAMP = ".flue-installed"


@dataclass(frozen=True)
class NodePackages:
    """Where the installed npm ingredients are."""

    workerd: Path
    """The workerd binary."""
    pyodide: Path
    """The folder holding ``pyodide.asm.mjs``, ``pyodide.asm.wasm`` and ``python_stdlib.zip``."""
    wrangler: Path
    """wrangler's command, a JavaScript file to run with :func:`wrangler_node`."""


def node_packages(cache: Cache) -> NodePackages:
    """Install (``npm ci``) the pinned npm packages into the cache unless the lock file is unchanged
    since the last install, and return where they are."""
    node_modules = _installed(cache.npm, PINNED_NPM)
    packages = NodePackages(
        workerd=_workerd_binary(node_modules),
        pyodide=node_modules / "pyodide",
        wrangler=node_modules / "wrangler" / "bin" / "wrangler.js",
    )
    if not packages.wrangler.is_file():
        raise IngredientUnavailable(f"npm wrangler@{WRANGLER_VERSION} installed without bin/wrangler.js.")
    for needed in ("pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip"):
        if not (packages.pyodide / needed).is_file():
            raise IngredientUnavailable(f"npm pyodide@{PYODIDE_VERSION} installed without {needed}.")
    return packages


def wrangler_node(cache: Cache) -> Path:
    """A ``node`` that runs the pinned wrangler: the host's when it is at least
    :data:`WRANGLER_NODE`, else npm's ``node-linux-<arch>@NODE_VERSION`` installed into the cache."""
    host = shutil.which("node")
    if host is not None and _node_version(Path(host)) >= WRANGLER_NODE:
        return Path(host)
    wanted = ".".join(map(str, WRANGLER_NODE))
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    if platform.system() != "Linux" or not arch:
        raise IngredientUnavailable(
            f"wrangler {WRANGLER_VERSION} needs Node.js {wanted} or newer and the host's node is"
            f" {'missing' if host is None else 'older'}; install Node.js 22 (e.g. `brew install node@22`)."
        )
    binary = _installed(cache.root / "npm-node", PINNED_NODE) / f"node-linux-{arch}" / "bin" / "node"
    if not binary.is_file():
        raise IngredientUnavailable(f"npm node-linux-{arch}@{NODE_VERSION} installed no bin/node.")
    return binary


def _node_version(node: Path) -> tuple[int, ...]:
    try:
        result = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30, check=False)
        return tuple(int(part) for part in result.stdout.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return (0,)


def _installed(folder: Path, pinned: Path) -> Path:
    """``folder/node_modules`` holding the packages pinned by ``pinned``'s package.json and lock,
    installed with ``npm ci`` unless the same lock was installed there before."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in NPM_FILES:
        target = folder / name
        if not target.exists() or not filecmp.cmp(pinned / name, target, shallow=False):
            shutil.copyfile(pinned / name, target)
    stamp = folder / "node_modules" / _STAMP
    wanted = digest([folder / "package-lock.json"])
    if not stamp.is_file() or stamp.read_text() != wanted:
        _npm_ci(folder)
        stamp.write_text(wanted)
    return folder / "node_modules"


def _npm_ci(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise IngredientUnavailable(
            f"npm is not installed: the workerd tooling installs npm workerd@{WORKERD_VERSION},"
            f" pyodide@{PYODIDE_VERSION} and wrangler@{WRANGLER_VERSION} with it. Install Node.js 20 or"
            " newer with npm (Debian: apt-get install nodejs npm)."
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
            f"npm ci in {folder} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
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

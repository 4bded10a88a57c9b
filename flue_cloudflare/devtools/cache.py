"""The one git-ignored folder that holds every fetched ingredient and built artefact.

One per machine, wherever a command runs from: ``--cache DIR`` or ``$FLUE_CLOUDFLARE_CACHE`` when
given; else ``.cloudflare/`` of the source checkout flue is installed from (a clone of its
repository, installed editable); else the user's cache folder (``$XDG_CACHE_HOME/flue-cloudflare``,
``~/.cache/flue-cloudflare``). Its layout::

    npm/            package.json + package-lock.json copied from the package; node_modules/ (npm ci)
    npm-node/       the same for Node.js 22, only when the host's node is too old for wrangler
    wheels/<key>/   wheels downloaded by pip for one requirement set
    bundle/<key>/   pyodide_dev.capnp.bin for one set of inputs
    apps/<key>/     an application laid out for workerd (entry module, python_modules/)
    deploy/<key>/   an application assembled for wrangler (wrangler.toml, its modules, python_modules/)
    local/<name>/   the default folder of ``serve``: configuration, log and Durable Object storage

Every ``<key>`` is a digest of the inputs, so a changed input builds a new entry and an unchanged
one is reused. An entry is built in a temporary sibling and renamed into place when complete, so an
interrupted build never leaves a half entry that looks finished.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

#: The environment variable that moves the cache root.
CACHE_ENV = "FLUE_CLOUDFLARE_CACHE"
#: The folder name of the cache root inside a source checkout of flue.
CACHE_DIR_NAME = ".cloudflare"
#: Its name in the user's cache folder.
USER_CACHE_NAME = "flue-cloudflare"


def flue_checkout() -> Path | None:
    """The source checkout this ``flue_cloudflare`` is imported from (the folder above the package,
    holding flue's ``pyproject.toml``), or ``None`` when it is installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if 'name = "flue"' in text else None


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/flue-cloudflare``, else ``~/.cache/flue-cloudflare``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / USER_CACHE_NAME


@dataclass(frozen=True)
class Cache:
    """The cache root and the places inside it."""

    root: Path

    @classmethod
    def default(cls, project: Path | None = None) -> Cache:
        """``$FLUE_CLOUDFLARE_CACHE``; else ``.cloudflare/`` in ``project`` when given, or in the checkout
        flue is installed from; else the user's cache folder. Never found from the current directory."""
        configured = os.environ.get(CACHE_ENV)
        if configured:
            return cls(Path(configured).resolve())
        checkout = project or flue_checkout()
        if checkout is not None:
            return cls(checkout.resolve() / CACHE_DIR_NAME)
        return cls(user_cache_root())

    @property
    def npm(self) -> Path:
        return self.root / "npm"

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def build(self, kind: str, key: str, make: Callable[[Path], None]) -> Path:
        """The entry ``kind/key``, made by ``make(folder)`` into an empty folder unless it exists.

        ``make`` writes into a temporary folder that is renamed to the entry when ``make`` returns;
        if it raises, nothing is left behind.
        """
        final = self.entry(kind, key)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            make(work)
            try:
                work.rename(final)
            except OSError:
                # Another process finished the same entry first: its copy is as good as ours.
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final


def digest(parts: Iterable[str | bytes | Path]) -> str:
    """A short hex digest of strings, bytes and file contents (a path stands for its bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            data = part.read_bytes()
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]

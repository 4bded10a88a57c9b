"""The one git-ignored folder that holds every fetched ingredient and built artefact.

Layout under the root (``.cloudflare/`` of the project by default, ``FLUE_CLOUDFLARE_CACHE`` to
move it)::

    npm/            package.json + package-lock.json copied from the package; node_modules/ (npm ci)
    wheels/<key>/   wheels downloaded by pip for one requirement set
    bundle/<key>/   pyodide_dev.capnp.bin for one set of inputs
    apps/<key>/     an application laid out for workerd (entry module, python_modules/)

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
#: The folder name of the default cache root, inside the project.
CACHE_DIR_NAME = ".cloudflare"


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current directory) holding a
    ``pyproject.toml``, else ``start`` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return here


@dataclass(frozen=True)
class Cache:
    """The cache root and the places inside it."""

    root: Path

    @classmethod
    def default(cls, project: Path | None = None) -> Cache:
        """``$FLUE_CLOUDFLARE_CACHE``, else ``.cloudflare/`` in the project root."""
        configured = os.environ.get(CACHE_ENV)
        if configured:
            return cls(Path(configured).resolve())
        return cls(project_root(project) / CACHE_DIR_NAME)

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

"""Lay out an application for workerd: its entry module and sources at the top, every package it
imports under ``python_modules/`` (wheels unpacked, native ``.so`` files included, and this
environment's own packages copied from their source).

workerd ships a Python Worker's files as modules: ``.py`` as ``pythonModule``, ``.js`` as
``esModule``, anything else (``.so``, ``.pth``, ``.pyi``, dist-info files) as ``data``; packages are
found on ``sys.path`` under ``python_modules/``. The layout is cached by a digest of everything it is
made of, so an unchanged application is laid out once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flue_cloudflare.devtools.app import WorkerApp
from flue_cloudflare.devtools.cache import Cache, digest
from flue_cloudflare.devtools.errors import VendoringFailed
from flue_cloudflare.devtools.wheels import download_wheels, flue_worker_requirements

PYTHON_MODULES = "python_modules"
#: Never shipped from a package's source folder: bytecode, and what tools install beside the source
#: (the Durable Streams conformance suite's ``node_modules/``, 46 MB, lives inside ``flue_core``).
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
_SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})


@dataclass(frozen=True)
class Module:
    """One file of the laid-out application, as workerd names and types it."""

    name: str
    """The module's name: its path in the layout, ``/``-separated."""
    kind: str
    """``pythonModule``, ``esModule`` or ``data``."""
    path: Path


@dataclass(frozen=True)
class LaidOutApp:
    """An application laid out in one cache folder."""

    app: WorkerApp
    folder: Path

    @property
    def main(self) -> str:
        return self.app.main.name

    def modules(self) -> list[Module]:
        """Every file as a module, the entry module first (workerd runs the first one)."""
        found = [self._module(path) for path in sorted(_files(self.folder))]
        return sorted(found, key=lambda module: module.name != self.main)

    def _module(self, path: Path) -> Module:
        name = path.relative_to(self.folder).as_posix()
        kind = {".py": "pythonModule", ".js": "esModule", ".mjs": "esModule"}.get(path.suffix, "data")
        return Module(name, kind, path)


def lay_out(cache: Cache, app: WorkerApp) -> LaidOutApp:
    """The application laid out in the cache, fetching its wheels first if needed."""
    requirements = app.requirements if app.requirements is not None else tuple(flue_worker_requirements())
    wheels = download_wheels(cache, requirements)
    packages = [app.package_folders.get(name) or _package_folder(name) for name in app.packages]
    excluded = [_excluded_folder(name, app) for name in app.exclude]
    tops = [app.main, *app.sources]
    inputs: list[str | Path] = [wheels.name]
    for top in tops:
        inputs += [top.name, *(_tagged(top, path) for path in sorted(_files(top)))]
    for folder in packages:
        inputs += [folder.name, *(_tagged(folder, path) for path in sorted(_files(folder, excluded)))]
    inputs += [_entry_points(app.packages)]

    def make(folder: Path) -> None:
        for top in tops:
            _copy(top, folder / top.name)
        modules = folder / PYTHON_MODULES
        modules.mkdir()
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(modules)
        for package in packages:
            _copy(package, modules / package.name, excluded)
        _write_dist_info(modules, app.packages)

    key = digest([app.name, *inputs])
    return LaidOutApp(app, cache.build("apps", f"{app.name}-{key}", make))


def _tagged(root: Path, path: Path) -> str:
    # A file's place matters as much as its bytes: a renamed module is a different application.
    return f"{path.relative_to(root.parent).as_posix()}:{digest([path])}"


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise VendoringFailed(f"Package {name!r} is not importable here, so it cannot be shipped to the Worker.")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _excluded_folder(dotted: str, app: WorkerApp) -> Path:
    top, _, rest = dotted.partition(".")
    if top not in app.packages:
        return Path("/nonexistent") / dotted
    folder = app.package_folders.get(top) or _package_folder(top)
    return folder.joinpath(*rest.split(".")) if rest else folder


def _files(root: Path, excluded: list[Path] | None = None) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in root.iterdir():
        skipped = path.name in _SKIP_DIRS or path.name.startswith(".") or path.suffix in _SKIP_SUFFIXES
        if skipped or path in (excluded or ()):
            continue
        if path.is_dir():
            yield from _files(path, excluded)
        else:
            yield path


def _copy(source: Path, target: Path, excluded: list[Path] | None = None) -> None:
    for path in _files(source, excluded):
        destination = target / path.relative_to(source) if source.is_dir() else target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)


def _entry_points(packages: tuple[str, ...]) -> str:
    """The ``flue`` entry points of the installed distributions whose module is shipped: the Worker
    finds its target plugins the way every other process does, and only those it can import."""
    lines = ["[flue]"]
    for entry_point in importlib.metadata.entry_points(group="flue"):
        if entry_point.module.partition(".")[0] in packages:
            lines.append(f"{entry_point.name} = {entry_point.value}")
    return "\n".join(lines) + "\n"


def _write_dist_info(modules: Path, packages: tuple[str, ...]) -> None:
    info = modules / "flue_worker_packages-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flue-worker-packages\nVersion: 0\n")
    (info / "entry_points.txt").write_text(_entry_points(packages))

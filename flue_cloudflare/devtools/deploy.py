"""Check and deploy an application with wrangler, uploading the same Python modules that run locally.

The application is described by its ``wrangler.toml``. :func:`deploy_folder` assembles what wrangler
uploads, in a cache folder: the ``wrangler.toml`` as it is, the entry module's folder (wrangler
uploads its modules), and ``python_modules/`` exactly as laid out for the local workerd (the same
wheels for the same Pyodide, flue's packages from this environment). :func:`run_deploy` first asks
the pinned workerd which Pyodide the configuration selects on Cloudflare and refuses one other than
the local tooling's, then runs the pinned wrangler (``deploy --dry-run --outdir DIR`` to check
offline, ``deploy`` to deploy) and reads the upload's size from its report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flue_cloudflare.devtools.app import WorkerApp
from flue_cloudflare.devtools.cache import Cache, digest
from flue_cloudflare.devtools.errors import ToolingError
from flue_cloudflare.devtools.ingredients import node_packages, wrangler_node
from flue_cloudflare.devtools.python_version import (
    COMPATIBILITY_DATE,
    PYODIDE_VERSION,
    PYTHON_VERSION,
    deployed_pyodide,
)
from flue_cloudflare.devtools.vendor import PYTHON_MODULES, lay_out
from flue_cloudflare.devtools.wrangler import PYTHON_WORKERS_FLAG
from flue_core.errors import ConfigurationError

#: Cloudflare's limits on a Worker's upload, after gzip compression, per plan (1 MB = 10^6 bytes
#: here: the smaller reading of "MB", so a check that passes passes either way).
PLAN_LIMITS = (("Workers Free", 3_000_000), ("Workers Paid", 10_000_000))
#: Cloudflare's limit on a Worker's upload before compression, on every plan.
UNCOMPRESSED_LIMIT = 64_000_000
_TOTAL = re.compile(r"Total Upload: ([0-9.]+) KiB / gzip: ([0-9.]+) KiB")
#: wrangler's output that is neither progress nor the report: kept short in errors.
WRANGLER_TAIL = 4000


class DeployFailed(ToolingError):
    """wrangler refused the application, or it is larger than any plan allows."""

    code = "deploy_failed"


@dataclass(frozen=True)
class UploadSize:
    """The size of a Worker's upload as wrangler reports it, in bytes."""

    raw: int
    gzip: int

    def report(self) -> str:
        """One line: both sizes and the share of each plan's limit the compressed one takes."""
        shares = ", ".join(f"{plan} {limit / 1e6:g} MB: {self.gzip / limit:.0%}" for plan, limit in PLAN_LIMITS)
        raw_limit = f"raw limit {UNCOMPRESSED_LIMIT / 1e6:g} MB"
        return f"upload {_mib(self.raw)} raw, {_mib(self.gzip)} gzip ({shares}; {raw_limit})"

    @property
    def plans(self) -> list[str]:
        """The plans whose limits the upload keeps."""
        return [plan for plan, limit in PLAN_LIMITS if self.gzip <= limit and self.raw <= UNCOMPRESSED_LIMIT]


@dataclass(frozen=True)
class Deployment:
    """What a (dry) run of ``wrangler deploy`` did."""

    folder: Path
    """The project folder wrangler ran in: ``wrangler.toml``, the entry module's folder, ``python_modules/``."""
    outdir: Path | None
    """With ``--dry-run``: the modules wrangler would have uploaded."""
    size: UploadSize
    pyodide: str
    """The Pyodide release Cloudflare runs the Worker on (the local tooling's)."""
    output: str


def deploy_folder(cache: Cache, config: Path, app: WorkerApp) -> Path:
    """The project folder wrangler deploys ``app`` (described by ``config``) from, assembled in the
    cache unless the same one was before."""
    laid_out = lay_out(cache, app)
    main = app.main.relative_to(config.parent.resolve())
    module_root = app.main.parent
    key = digest([config, str(main), laid_out.folder.name])

    def make(folder: Path) -> None:
        shutil.copyfile(config, folder / "wrangler.toml")
        shutil.copytree(laid_out.folder / PYTHON_MODULES, folder / PYTHON_MODULES)
        target = folder / main.parent
        target.mkdir(parents=True, exist_ok=True)
        for source in (app.main, *app.sources):
            destination = target / source.relative_to(module_root)
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copyfile(source, destination)

    return cache.build("deploy", f"{app.name}-{key}", make)


def check_python(cache: Cache, app: WorkerApp) -> str:
    """The Pyodide release Cloudflare would run ``app`` on, which must be the local tooling's."""
    flags = [PYTHON_WORKERS_FLAG, *app.compatibility_flags]
    release = deployed_pyodide(node_packages(cache).workerd, app.compatibility_date, flags)
    if release != PYODIDE_VERSION:
        raise ConfigurationError(
            f"Worker {app.name!r} would run on Pyodide {release} on Cloudflare (compatibility_date"
            f" {app.compatibility_date}, flags {flags}), but runs locally and is built for Pyodide"
            f" {PYODIDE_VERSION} (Python {PYTHON_VERSION}): set compatibility_date = \"{COMPATIBILITY_DATE}\""
            " or later in its wrangler.toml."
        )
    return release


def run_deploy(cache: Cache, config: Path, app: WorkerApp, *, dry_run: bool, outdir: Path | None = None) -> Deployment:
    """``wrangler deploy`` of ``app`` (``--dry-run --outdir`` when ``dry_run``: offline, nothing
    uploaded), after checking its Python; :class:`DeployFailed` with wrangler's output if it fails or
    the upload is larger than any plan allows."""
    pyodide = check_python(cache, app)
    folder = deploy_folder(cache, config, app)
    arguments = ["deploy"]
    if dry_run:
        outdir = (outdir or folder / "dist").resolve()
        shutil.rmtree(outdir, ignore_errors=True)
        arguments += ["--dry-run", "--outdir", str(outdir)]
    result = run_wrangler(cache, folder, arguments, capture=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise DeployFailed(
            f"wrangler {' '.join(arguments)} failed (exit {result.returncode}):\n{output[-WRANGLER_TAIL:]}"
        )
    found = _TOTAL.search(output)
    if found is None:
        raise DeployFailed(f"wrangler did not report the upload's size:\n{output[-WRANGLER_TAIL:]}")
    size = UploadSize(raw=round(float(found.group(1)) * 1024), gzip=round(float(found.group(2)) * 1024))
    if not size.plans:
        raise DeployFailed(f"Worker {app.name!r} is too large for every plan: {size.report()}.")
    return Deployment(folder, outdir if dry_run else None, size, pyodide, output)


def run_wrangler(
    cache: Cache, folder: Path, arguments: list[str], *, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """The pinned wrangler, on a Node.js it runs on, in ``folder``: what it prints is captured or
    shown, its questions reach the terminal only when not captured."""
    command = [str(wrangler_node(cache)), str(node_packages(cache).wrangler), *arguments]
    env = {
        **os.environ,
        "WRANGLER_SEND_METRICS": os.environ.get("WRANGLER_SEND_METRICS", "false"),
        "WRANGLER_LOG_PATH": str(folder / ".wrangler" / "logs"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL if capture else None,
        capture_output=capture,
        text=True,
        check=False,
    )


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MiB"

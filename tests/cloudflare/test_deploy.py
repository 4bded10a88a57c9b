"""The offline deploy check: the example's ``wrangler.toml`` and the ``python_modules/`` that run
locally pass ``wrangler deploy --dry-run --outdir`` (the pinned wrangler), run by the guide's own
command, and the upload's size is reported against the plans' limits."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from flue_cloudflare.devtools import Cache
from flue_cloudflare.devtools.deploy import PLAN_LIMITS, deploy_folder
from flue_cloudflare.devtools.ingredients import WORKERD_VERSION, WRANGLER_VERSION, node_packages
from flue_cloudflare.devtools.vendor import PYTHON_MODULES, lay_out
from flue_cloudflare.devtools.wrangler import app_from_wrangler
from workerd_support import ROOT

EXAMPLE = ROOT / "examples" / "cloudflare"
GUIDE = ROOT / "docs" / "cloudflare.md"
DEPLOY_CHECK = "python -m flue_cloudflare.devtools deploy --dry-run"


def devtools(cache: Cache, *arguments: str, cwd: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flue_cloudflare.devtools", "--cache", str(cache.root), *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600, check=False)


def files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_the_guides_dry_run_of_the_example_validates_offline_and_reports_its_size(
    cloudflare_cache: Cache, tmp_path: Path, upload_reports: list[str]
) -> None:
    assert f"cd examples/cloudflare\n{DEPLOY_CHECK}" in GUIDE.read_text().replace("../../.venv/bin/", "")
    result = devtools(cloudflare_cache, *shlex.split(DEPLOY_CHECK)[3:], "--outdir", str(tmp_path / "upload"))
    assert result.returncode == 0, result.stderr
    report = next(line for line in result.stdout.splitlines() if line.startswith("upload "))
    upload_reports.append(f"examples/cloudflare: {report}")
    assert "on Pyodide 314.0.6 (Python 3.14)" in result.stdout
    # What wrangler would upload: the entry module's folder, and python_modules/ as laid out locally.
    uploaded = files(tmp_path / "upload")
    assert {"worker.py", "digest_workflows.py"} <= set(uploaded)
    project = Path(next(line for line in result.stdout.splitlines() if line.startswith("project folder: "))[16:])
    assert {name: data for name, data in uploaded.items() if name.startswith(f"{PYTHON_MODULES}/")} == {
        f"{PYTHON_MODULES}/{name}": data for name, data in files(project / PYTHON_MODULES).items()
    }
    local = lay_out(cloudflare_cache, app_from_wrangler(EXAMPLE / "wrangler.toml")).folder / PYTHON_MODULES
    assert set(files(local)) == set(files(project / PYTHON_MODULES))  # the layout workerd ran
    free_plan = dict(PLAN_LIMITS)["Workers Free"]
    gzip_mib = float(report.split(" raw, ")[1].split(" MiB")[0])
    assert gzip_mib * 1024 * 1024 <= free_plan, report  # the example deploys on the Free plan


def test_a_configuration_wrangler_refuses_fails_the_check_with_wranglers_message(
    cloudflare_cache: Cache, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "worker.py").write_text((EXAMPLE / "src" / "worker.py").read_text())
    (tmp_path / "src" / "digest_workflows.py").write_text((EXAMPLE / "src" / "digest_workflows.py").read_text())
    broken = (EXAMPLE / "wrangler.toml").read_text().replace("max_batch_size = 10", 'max_batch_size = "ten"')
    (tmp_path / "wrangler.toml").write_text(broken)
    result = devtools(cloudflare_cache, "deploy", "--dry-run", cwd=tmp_path)
    assert result.returncode == 1
    assert "devtools: deploy_failed: wrangler deploy --dry-run" in result.stderr
    assert "max_batch_size" in result.stderr


def test_the_project_folder_is_assembled_once_per_configuration(cloudflare_cache: Cache) -> None:
    app = app_from_wrangler(EXAMPLE / "wrangler.toml")
    folder = deploy_folder(cloudflare_cache, EXAMPLE / "wrangler.toml", app)
    assert deploy_folder(cloudflare_cache, EXAMPLE / "wrangler.toml", app) == folder
    assert (folder / "wrangler.toml").read_bytes() == (EXAMPLE / "wrangler.toml").read_bytes()
    assert (folder / "src" / "worker.py").is_file() and (folder / PYTHON_MODULES / "flue_core").is_dir()


def test_wrangler_runs_on_the_workerd_the_local_tooling_pins(cloudflare_cache: Cache) -> None:
    modules = node_packages(cloudflare_cache).wrangler.parents[2]
    wrangler = json.loads((modules / "wrangler" / "package.json").read_text())
    assert wrangler["version"] == WRANGLER_VERSION
    assert wrangler["dependencies"]["workerd"] == WORKERD_VERSION
    assert not (modules / "wrangler" / "node_modules" / "workerd").exists()  # one workerd, shared

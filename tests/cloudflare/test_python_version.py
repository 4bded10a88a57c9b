"""One Python from local to deployed: the Pyodide Cloudflare runs the generated ``wrangler.toml`` on
(as the pinned workerd's own release table decides it) is the one the local dev bundle is built
from, the wheels are fetched for its Python and ABI, and the local Worker runs that Python."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest

from flue_cloudflare.devtools import Cache, LocalWorker
from flue_cloudflare.devtools.deploy import check_python
from flue_cloudflare.devtools.ingredients import node_packages
from flue_cloudflare.devtools.python_version import (
    COMPATIBILITY_DATE,
    PYODIDE_VERSION,
    PYTHON_VERSION,
    WHEEL_PLATFORM,
    deployed_pyodide,
)
from flue_cloudflare.devtools.wheels import download_wheels, flue_worker_requirements
from flue_cloudflare.devtools.wrangler import app_from_wrangler
from flue_core.errors import ConfigurationError
from workerd_support import ROOT

EXAMPLE_CONFIG = ROOT / "examples" / "cloudflare" / "wrangler.toml"


def test_the_deployed_configuration_selects_the_pyodide_the_local_bundle_is_built_from(
    cloudflare_cache: Cache,
) -> None:
    config = tomllib.loads(EXAMPLE_CONFIG.read_text())
    packages = node_packages(cloudflare_cache)
    deployed = deployed_pyodide(packages.workerd, config["compatibility_date"], config["compatibility_flags"])
    bundled = json.loads((packages.pyodide / "package.json").read_text())["version"]
    assert deployed == bundled == PYODIDE_VERSION
    assert config["compatibility_date"] == COMPATIBILITY_DATE


def test_the_day_before_the_pinned_date_would_deploy_another_python(cloudflare_cache: Cache) -> None:
    workerd = node_packages(cloudflare_cache).workerd
    assert deployed_pyodide(workerd, "2026-09-07", ["python_workers"]) == "0.28.2"  # Python 3.13


def test_the_wheels_are_fetched_for_the_python_and_abi_of_that_pyodide(cloudflare_cache: Cache) -> None:
    info = json.loads((node_packages(cloudflare_cache).pyodide / "pyodide-lock.json").read_text())["info"]
    assert info["python"].rsplit(".", 1)[0] == PYTHON_VERSION
    assert WHEEL_PLATFORM == f"pyemscripten_{info['abi_version']}_{info['arch']}"
    wheels = download_wheels(cloudflare_cache, flue_worker_requirements())
    native = [wheel.name for wheel in wheels.glob("*.whl") if not wheel.name.endswith("-none-any.whl")]
    assert native  # pydantic_core
    abi = "cp" + PYTHON_VERSION.replace(".", "")
    assert all(f"-{abi}-{abi}-{WHEEL_PLATFORM}.whl" in name for name in native), native


def test_a_configuration_that_would_deploy_another_python_is_refused(cloudflare_cache: Cache, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "worker.py").write_text("")
    text = EXAMPLE_CONFIG.read_text().replace(COMPATIBILITY_DATE, "2026-08-01")
    (tmp_path / "wrangler.toml").write_text(text)
    with pytest.raises(ConfigurationError) as raised:
        check_python(cloudflare_cache, app_from_wrangler(tmp_path / "wrangler.toml"))
    assert "Pyodide 0.28.2 on Cloudflare" in raised.value.message
    assert f'compatibility_date = "{COMPATIBILITY_DATE}"' in raised.value.message


def test_the_local_worker_runs_that_python(smoke: LocalWorker) -> None:
    answer = httpx.get(smoke.url + "/python", timeout=30).json()
    assert answer["pyodide"] == PYODIDE_VERSION
    assert answer["python"].rsplit(".", 1)[0] == PYTHON_VERSION

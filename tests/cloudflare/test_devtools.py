"""The local workerd tooling itself: the Pyodide edits, the cache, the layout, the configuration, the
command line, and the errors it gives when an ingredient is missing or a Worker does not load."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from workerd_support import ROOT, WORKERS, smoke_app

from flue_cloudflare.devtools import (
    BundleBuildFailed,
    Cache,
    IngredientUnavailable,
    LocalWorker,
    Queue,
    WorkerApp,
    WorkerdFailed,
)
from flue_cloudflare.devtools import cache as cache_module
from flue_cloudflare.devtools.app import FLUE_OBJECTS
from flue_cloudflare.devtools.bundle import BUNDLE_FILE, build_bundle
from flue_cloudflare.devtools.config import Ports, render
from flue_cloudflare.devtools.ingredients import capnp_tool, node_packages
from flue_cloudflare.devtools.pyodide_patch import EDITS, PRELUDE, patch
from flue_cloudflare.devtools.vendor import PYTHON_MODULES, lay_out
from flue_cloudflare.devtools.wheels import HOST_ONLY, flue_worker_requirements
from flue_cloudflare.devtools.wrangler import parse_queue
from flue_core.errors import ConfigurationError


@pytest.fixture(scope="module")
def pyodide_source(cloudflare_cache: Cache) -> str:
    return (node_packages(cloudflare_cache).pyodide / "pyodide.asm.mjs").read_text()


def test_every_edit_of_pyodide_matches_its_expected_number_of_sites(pyodide_source: str) -> None:
    patched = patch(pyodide_source)
    assert patched.startswith(PRELUDE)
    assert "new WebAssembly.Module(" not in patched
    assert "crypto.getRandomValues(" not in patched
    assert patched.count("patchedLoadLibData(Module,libName,flags.rpath)") == 1
    assert patched.rstrip().endswith("export { _createPyodideModule };")


def test_an_edit_matching_another_number_of_sites_fails_the_build(pyodide_source: str) -> None:
    with pytest.raises(BundleBuildFailed) as raised:
        patch(pyodide_source + "\nvar extra = Date.now();\n")
    assert "Date.now -> monotonicDateNow: 23 sites, expected 22" in raised.value.message
    assert len(EDITS) == 8


def test_the_bundle_is_built_once_and_reused_while_its_inputs_are_unchanged(cloudflare_cache: Cache) -> None:
    packages = node_packages(cloudflare_cache)
    first = build_bundle(cloudflare_cache, packages)
    built_at = (first / BUNDLE_FILE).stat().st_mtime_ns
    assert build_bundle(cloudflare_cache, packages) == first
    assert (first / BUNDLE_FILE).stat().st_mtime_ns == built_at
    assert (first / BUNDLE_FILE).stat().st_size > 10_000_000


def test_missing_npm_is_an_error_saying_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(IngredientUnavailable) as raised:
        node_packages(Cache(tmp_path / "cache"))
    assert "npm is not installed" in raised.value.message
    assert "Node.js 20" in raised.value.message


def test_missing_capnp_that_cannot_be_installed_is_an_error_saying_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither capnp nor apt-get
    with pytest.raises(IngredientUnavailable) as raised:
        capnp_tool()
    assert "apt-get install capnproto" in raised.value.message


def test_worker_requirements_hold_the_sdk_and_none_of_the_thread_or_socket_packages() -> None:
    requirements = flue_worker_requirements()
    names = {r.split("=")[0].split(">")[0].split("<")[0].lower() for r in requirements}
    assert "workers-runtime-sdk==1.9.5" in requirements
    assert {"pydantic", "anyio", "pluggy", "python-ulid", "tzdata"} <= names
    assert not names & HOST_ONLY


def test_the_layout_ships_native_wheels_and_no_devtools(cloudflare_cache: Cache) -> None:
    laid_out = lay_out(cloudflare_cache, smoke_app())
    modules = {m.name: m for m in laid_out.modules()}
    assert laid_out.modules()[0].name == "smoke_worker.py"
    assert modules["flue_probe.py"].kind == "pythonModule"
    native = [
        m for m in modules.values() if m.name.startswith(f"{PYTHON_MODULES}/pydantic_core/") and m.name.endswith(".so")
    ]
    assert native and all(m.kind == "data" for m in native)
    assert f"{PYTHON_MODULES}/flue_core/__init__.py" in modules
    assert f"{PYTHON_MODULES}/workers/__init__.py" in modules
    assert not [name for name in modules if "/devtools/" in name or "__pycache__" in name]
    entry_points = laid_out.folder / PYTHON_MODULES / "flue_worker_packages-0.dist-info" / "entry_points.txt"
    assert "local = flue_node_like.plugin" in entry_points.read_text()


def test_the_layout_is_reused_until_a_source_changes(cloudflare_cache: Cache, tmp_path: Path) -> None:
    main = tmp_path / "worker.py"
    main.write_text("VERSION = 1\n")
    app = WorkerApp(name="reuse", main=main, packages=())
    first = lay_out(cloudflare_cache, app).folder
    assert lay_out(cloudflare_cache, app).folder == first
    main.write_text("VERSION = 2\n")
    changed = lay_out(cloudflare_cache, app).folder
    assert changed != first
    assert (changed / "worker.py").read_text() == "VERSION = 2\n"


def test_the_configuration_embeds_every_module_relative_to_its_own_folder(
    cloudflare_cache: Cache, tmp_path: Path
) -> None:
    laid_out = lay_out(cloudflare_cache, smoke_app())
    text = render(laid_out, config_dir=tmp_path, storage=tmp_path / "storage", ports=Ports(8000, 8001, {"jobs": 8002}))
    embeds = [line.split('embed "')[1].split('"')[0] for line in text.splitlines() if 'embed "' in line]
    assert len(embeds) == len(laid_out.modules())
    assert all(not path.startswith("/") and (tmp_path / path).resolve().is_file() for path in embeds)
    assert '(name = "CRONS", json = "{\\"APP\\": [\\"* * * * *\\"]}")' in text
    assert 'address = "127.0.0.1:8001"' in text
    assert '(name = "queue-0", address = "127.0.0.1:8002", http = (), service = (name = "queues", props = (json = "{\\"queue\\": \\"jobs\\"}")))' in text


def test_an_application_with_a_bad_binding_name_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        WorkerApp(name="bad", main=WORKERS / "smoke_worker.py", vars={"not a name": 1})


def test_a_worker_that_fails_to_load_is_reported_with_its_traceback(
    tmp_path: Path, local_worker: Callable[..., LocalWorker]
) -> None:
    main = tmp_path / "broken.py"
    main.write_text("import module_that_is_not_shipped\n")
    with pytest.raises(WorkerdFailed) as raised:
        local_worker(WorkerApp(name="broken", main=main, packages=()), ready_path="/")
    assert "module_that_is_not_shipped" in raised.value.message


def test_the_command_line_fetches_and_prints_where_the_ingredients_are(cloudflare_cache: Cache) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flue_cloudflare.devtools", "--cache", str(cloudflare_cache.root), "fetch"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bundle = next(line for line in result.stdout.splitlines() if line.startswith("bundle: ")).removeprefix("bundle: ")
    assert Path(bundle).is_file()
    assert zipfile.is_zipfile(next((cloudflare_cache.root / "wheels").glob("*/pydantic_core-*.whl")))


def test_the_command_line_writes_a_flue_applications_wrangler_toml(tmp_path: Path) -> None:
    output = tmp_path / "wrangler.toml"
    arguments = [
        "wrangler", str(WORKERS / "runs_worker.py"), "--flue", "--name", "runs", "--cron", "0 * * * *",
        "--queue", "jobs:JOBS", "--var", "LIMIT=3", "--main-path", "src/runs_worker.py", "--output", str(output),
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "flue_cloudflare.devtools", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(output.read_text())
    assert config["name"] == "runs" and config["main"] == "src/runs_worker.py"
    assert config["compatibility_flags"] == ["python_workers"]
    assert {b["name"] for b in config["durable_objects"]["bindings"]} >= {"FLUE_RUNS", "FLUE_INDEX"}
    assert config["triggers"]["crons"] == ["0 * * * *"]
    assert config["queues"]["producers"] == [{"binding": "JOBS", "queue": "jobs"}]
    assert config["vars"] == {"LIMIT": 3}


def test_the_classes_a_worker_exports_are_the_ones_the_tooling_binds() -> None:
    source = (ROOT / "flue_cloudflare" / "exports.py").read_text()
    exported = next(
        ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__"
    )
    assert sorted(exported) == sorted(durable.class_name for durable in FLUE_OBJECTS)


def test_a_queue_option_carries_wranglers_batch_settings() -> None:
    queue = parse_queue("jobs:JOBS,max_batch_size=10,max_batch_timeout=1,dead_letter_queue=failed")
    assert queue == Queue("jobs", "JOBS", settings={"maxBatchSize": 10, "maxBatchTimeout": 1, "deadLetterQueue": "failed"})
    assert parse_queue("audit,consume=false") == Queue("audit", None, consume=False)
    with pytest.raises(ConfigurationError) as raised:
        parse_queue("jobs,batch_size=3")
    assert "max_batch_size" in raised.value.message


def test_the_cache_is_the_checkouts_or_the_users_never_the_current_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLUE_CLOUDFLARE_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "elsewhere"\n')
    assert Cache.default().root == ROOT / ".cloudflare"  # flue is installed from this checkout
    monkeypatch.setattr(cache_module, "flue_checkout", lambda: None)  # as from a wheel
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Cache.default().root == tmp_path / "xdg" / "flue-cloudflare"
    monkeypatch.setenv("FLUE_CLOUDFLARE_CACHE", str(tmp_path / "mine"))
    assert Cache.default().root == tmp_path / "mine"


def test_what_tools_install_inside_a_package_is_not_shipped(cloudflare_cache: Cache) -> None:
    modules = {m.name for m in lay_out(cloudflare_cache, smoke_app()).modules()}
    assert not [name for name in modules if "/node_modules/" in name or "/." in name]

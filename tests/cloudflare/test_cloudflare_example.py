"""The Cloudflare example (``examples/cloudflare``) on a real workerd, its cron trigger and queue fired
from the command line, and its ``wrangler.toml``: written again byte for byte by the command it names."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from types import ModuleType

import httpx

from flue_cloudflare.devtools import Cache, LocalWorker
from flue_cloudflare.devtools.app import FLUE_OBJECTS
from flue_cloudflare.devtools.wrangler import app_from_wrangler, render_wrangler
from workerd_support import ROOT, eventually

EXAMPLE = ROOT / "examples" / "cloudflare"
TOKEN = "example-reader"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloudflare_example_serve", EXAMPLE / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def devtools(*arguments: str, cwd: os.PathLike[str] = EXAMPLE) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flue_cloudflare.devtools", *arguments]
    env = {key: value for key, value in os.environ.items() if key != "FLUE_CLOUDFLARE_CACHE"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False)


def test_the_command_a_wrangler_toml_names_writes_it_again_byte_for_byte() -> None:
    committed = (EXAMPLE / "wrangler.toml").read_text()
    command = committed.splitlines()[0].split("`")[1].removesuffix(" > wrangler.toml")
    assert command in (ROOT / "docs" / "cloudflare.md").read_text()  # the guide's command
    assert "max_batch_size=10,max_batch_timeout=1" in command
    result = devtools(*shlex.split(command)[3:])
    assert result.returncode == 0, result.stderr
    assert result.stdout == committed


def test_the_application_a_wrangler_toml_describes_is_written_back_unchanged() -> None:
    app = app_from_wrangler(EXAMPLE / "wrangler.toml")
    assert app.name == "flue-example" and app.main == EXAMPLE / "src" / "worker.py"
    assert app.sources == (EXAMPLE / "src" / "digest_workflows.py",)  # the entry module's folder, as wrangler uploads it
    assert render_wrangler(app, main="src/worker.py") == (EXAMPLE / "wrangler.toml").read_text()


def test_commands_run_in_the_examples_folder_name_it_from_its_config_and_share_the_one_cache() -> None:
    result = devtools("config")
    assert result.returncode == 0, result.stderr
    cache = Cache.default(ROOT)
    assert f"{cache.root / 'local' / 'flue-example' / 'workerd.capnp'} config" in result.stdout
    assert not (EXAMPLE / ".cloudflare").exists()


def test_wrangler_toml_binds_every_object_class_of_the_target_with_a_sqlite_migration() -> None:
    config = tomllib.loads((EXAMPLE / "wrangler.toml").read_text())
    assert config["main"] == "src/worker.py" and "python_workers" in config["compatibility_flags"]
    bound = {(b["class_name"], b["name"]) for b in config["durable_objects"]["bindings"]}
    assert bound == {(o.class_name, o.binding) for o in FLUE_OBJECTS}
    assert config["migrations"][0]["new_sqlite_classes"] == [o.class_name for o in FLUE_OBJECTS]
    assert config["triggers"]["crons"] == ["*/5 * * * *"]
    assert config["queues"]["consumers"][0] == {"queue": "jobs", "max_batch_size": 10, "max_batch_timeout": 1}
    assert "vars" not in config  # READ_TOKEN is a secret on Cloudflare


def test_the_example_runs_a_digest_per_cron_tick_and_a_job_per_queue_message(
    local_worker: Callable[..., LocalWorker],
) -> None:
    worker = local_worker(example().worker_app(TOKEN))
    reader = httpx.Client(base_url=worker.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    fired = devtools("cron", "--folder", str(worker.folder))
    assert fired.returncode == 0, fired.stderr
    tick = int(fired.stdout.split("scheduledTime ")[1].split()[0])

    def finished(workflow: str) -> list[dict]:
        runs = reader.get("/runs", params={"workflow": workflow}).json()["runs"]
        return [run for run in runs if run["status"] == "completed"]

    (digest,) = eventually(lambda: finished("digest"), timeout=30)
    assert digest["key"] == f"digest:{tick}" and digest["result"]["tick"] == tick
    sent = devtools("send", "jobs", "three little words", "--folder", str(worker.folder))
    assert sent.returncode == 0, sent.stderr
    (job,) = eventually(lambda: finished("process-job"), timeout=30)
    assert job["result"] == {"body": "three little words", "words": 3}
    assert reader.post("/jobs", content="four more little words").status_code == 202  # the Worker's producer
    eventually(lambda: len(finished("process-job")) == 2, timeout=30)
    assert httpx.get(f"{worker.url}/runs/{job['runId']}", timeout=30).status_code == 404  # no token, no read

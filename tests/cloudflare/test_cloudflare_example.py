"""The Cloudflare example (``examples/cloudflare``) on a real workerd, and its ``wrangler.toml``."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from collections.abc import Callable
from types import ModuleType

import httpx

from flue_cloudflare.devtools import LocalWorker
from flue_cloudflare.devtools.app import FLUE_OBJECTS
from flue_cloudflare.devtools.wrangler import render_wrangler
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


def test_the_committed_wrangler_toml_is_what_the_tooling_writes_for_the_example() -> None:
    written = render_wrangler(example().worker_app(), main="src/worker.py")
    assert (EXAMPLE / "wrangler.toml").read_text() == written


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
    tick = worker.fire_crons_soon()

    def finished(workflow: str) -> list[dict]:
        runs = reader.get("/runs", params={"workflow": workflow}).json()["runs"]
        return [run for run in runs if run["status"] == "completed"]

    (digest,) = eventually(lambda: finished("digest"), timeout=30)
    assert digest["key"] == f"digest:{tick}" and digest["result"]["tick"] == tick
    assert reader.post("/jobs", content="three little words").status_code == 202
    (job,) = eventually(lambda: finished("process-job"), timeout=30)
    assert job["result"] == {"body": "three little words", "words": 3}
    assert httpx.get(f"{worker.url}/runs/{job['runId']}", timeout=30).status_code == 404  # no token, no read

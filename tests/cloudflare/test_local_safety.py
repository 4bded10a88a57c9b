"""The local tooling is safe to leave running: ``serve`` stops its workerd on SIGTERM and SIGHUP, a
workerd dies with the process that started it (``kill -9`` of ``serve``, a test run stopped by
SIGTERM), and a second workerd on a storage folder in use is refused, naming the first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flue_cloudflare.devtools import Cache, LocalWorker, WorkerApp
from flue_cloudflare.devtools.folder_lock import FolderInUse
from flue_cloudflare.devtools.ingredients import SDK_REQUIREMENT
from workerd_support import WORKERS, eventually

TINY = WORKERS / "tiny_worker.py"


def tiny_app() -> WorkerApp:
    return WorkerApp(name="tiny", main=TINY, requirements=(SDK_REQUIREMENT,))


def serve(cache: Cache, folder: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "flue_cloudflare.devtools", "--cache", str(cache.root), "serve", str(TINY),
        "--name", "tiny", "--requirement", SDK_REQUIREMENT, "--folder", str(folder),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def serving(folder: Path, process: subprocess.Popen[str]) -> dict[str, Any]:
    """The state a started ``serve`` wrote, once it has."""

    def written() -> dict[str, Any] | None:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {process.communicate()}")
        try:
            return dict(json.loads((folder / "serving.json").read_text()))
        except (OSError, ValueError):
            return None

    return eventually(written, timeout=120, interval=0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_serve_stops_its_workerd_and_frees_the_folder_on(stop: signal.Signals, cloudflare_cache: Cache, tmp_path: Path) -> None:
    process = serve(cloudflare_cache, tmp_path)
    workerd = serving(tmp_path, process)["workerd_pid"]
    assert alive(workerd)
    process.send_signal(stop)
    assert process.wait(60) == 0
    assert not alive(workerd)
    assert not (tmp_path / "serving.json").exists()


def test_a_second_workerd_on_a_folder_in_use_is_refused_naming_the_first(cloudflare_cache: Cache, tmp_path: Path) -> None:
    first = serve(cloudflare_cache, tmp_path)
    workerd = serving(tmp_path, first)["workerd_pid"]
    second = serve(cloudflare_cache, tmp_path)
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 1
    assert f"devtools: folder_in_use: The storage folder {tmp_path} is in use by workerd (pid {workerd})" in errors
    assert f"started by process {first.pid} (`python" in errors and "serve" in errors
    with pytest.raises(FolderInUse):
        LocalWorker(tiny_app(), tmp_path, cache=cloudflare_cache).start()
    assert alive(workerd)  # the refused ones touched nothing
    first.kill()  # kill -9 of serve: its workerd dies with it, and the folder is free
    first.wait()
    eventually(lambda: not alive(workerd), timeout=10)
    with LocalWorker(tiny_app(), tmp_path, cache=cloudflare_cache) as again:
        assert again.workerd.running


def test_a_test_run_stopped_by_sigterm_leaves_no_workerd(cloudflare_cache: Cache, tmp_path: Path) -> None:
    started = tmp_path / "started"
    (tmp_path / "test_holding.py").write_text(
        f"""
import threading, time
from pathlib import Path
from flue_cloudflare.devtools import Cache, LocalWorker, WorkerApp

def test_holds_a_workerd():
    app = WorkerApp(name="tiny", main=Path({str(TINY)!r}), requirements=({SDK_REQUIREMENT!r},))
    worker = LocalWorker(app, Path({str(tmp_path / "folder")!r}), cache=Cache(Path({str(cloudflare_cache.root)!r})))
    # Started from a thread that ends at once: workerd lives as long as the process, not the thread.
    thread = threading.Thread(target=worker.start)
    thread.start()
    thread.join()
    Path({str(started)!r}).write_text(str(worker.workerd.pid))
    time.sleep(600)
"""
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_holding.py"]
    run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workerd = int(eventually(lambda: started.is_file() and started.read_text(), timeout=120))
        time.sleep(0.5)
        assert alive(workerd)
        os.kill(run.pid, signal.SIGTERM)
        run.wait(30)
        eventually(lambda: not alive(workerd), timeout=10)
    finally:
        if run.poll() is None:
            run.kill()

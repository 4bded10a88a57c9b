"""Run the example Worker locally on workerd (offline, with flue's tooling) and watch its triggers.

    .venv/bin/python examples/cloudflare/serve.py          # fire the cron trigger, queue a job, follow both runs
    .venv/bin/python examples/cloudflare/serve.py --keep   # then keep serving until Ctrl-C, SIGTERM or SIGHUP

The application is the one ``wrangler.toml`` describes, as it deploys. The first start fetches and
builds what is missing (workerd and Pyodide from npm, wheels from PyPI; see docs/cloudflare.md). The
cron trigger is workerd's own ``cron.js``, moved forward with its test clock so that it fires at
once; the queue is workerd's ``queues.js``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import httpx

from flue_cloudflare.devtools import LocalWorker, WorkerApp
from flue_cloudflare.devtools.process import stop_signals_as_ctrl_c
from flue_cloudflare.devtools.wrangler import app_from_wrangler
from flue_core.client import FlueClient

HERE = Path(__file__).resolve().parent


def worker_app(read_token: str | None = None) -> WorkerApp:
    """The example as ``wrangler.toml`` describes it (its modules, objects, cron trigger and queue),
    with ``READ_TOKEN`` when given (on Cloudflare it is a secret, not in ``wrangler.toml``)."""
    return app_from_wrangler(HERE / "wrangler.toml", vars={} if read_token is None else {"READ_TOKEN": read_token})


def newest_run(worker: LocalWorker, token: str, workflow: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = httpx.get(
            f"{worker.url}/runs", params={"workflow": workflow}, headers={"authorization": f"Bearer {token}"}
        )
        runs = page.json()["runs"]
        if runs:
            return str(runs[0]["runId"])
        time.sleep(0.2)
    raise SystemExit(f"no {workflow} run was started within {timeout} s")


async def follow(url: str, token: str, run_id: str) -> None:
    async with FlueClient(url, token=token) as client:
        async for event in client.events(run_id, follow=True, live="sse"):
            print(f"  {run_id} #{event.index} {event.type} {event.data if event.type != 'run_queued' else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    args = parser.parse_args()
    token = secrets.token_urlsafe(12)
    with (
        tempfile.TemporaryDirectory(prefix="flue-example-") as folder,
        LocalWorker(worker_app(token), Path(folder)) as worker,
    ):
        print(f"serving at {worker.url}; read runs with: Authorization: Bearer {token}")
        worker.fire_crons_soon()  # cron.js's test clock: the */5 trigger fires now
        digest = newest_run(worker, token, "digest")
        print(f"the cron trigger started {digest}:")
        asyncio.run(follow(worker.url, token, digest))
        httpx.post(f"{worker.url}/jobs", content="count the words of this job").raise_for_status()
        job = newest_run(worker, token, "process-job")
        print(f"the queue consumer started {job}:")
        asyncio.run(follow(worker.url, token, job))
        if args.keep:
            print(f"serving at {worker.url} until Ctrl-C (cron.js clock: {worker.cron_url}/clock?advance=<ms>)")
            try:
                while worker.workerd.running:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    with stop_signals_as_ctrl_c(), suppress(KeyboardInterrupt):  # SIGTERM and SIGHUP stop it as Ctrl-C does
        main()

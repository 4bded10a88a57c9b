"""Takes the dashboard's screenshots in docs/images/ at a laptop size (1440x900): run by scripts/screenshots.

Serves an app with the dashboard on a fresh SQLite file, admits runs of a few workflows (completed,
failed, cancelled, one still running half-way through its progress), opens the runs page and the
running run's page in headless Chromium, and saves both.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers the dashboard's tests use

from browser import Served, chromium, served_in_background, wait_for  # noqa: E402

from flue_core import RunContext, Runtime, runs, workflow, workflows  # noqa: E402
from flue_core.dashboard import LinkAccess  # noqa: E402
from flue_core.http import create_app  # noqa: E402

IMAGES = ROOT / "docs" / "images"
HOLD: dict[str, anyio.Event] = {}


async def fetch(source: str, pause: float) -> int:
    await anyio.sleep(pause)
    return random.Random(source).randint(3, 40)


@workflow(name="daily-summary", retries=1)
async def daily_summary(ctx: RunContext, input: dict) -> dict:
    """The example app's workflow; a run given a ``reviewer`` waits half-way until the script lets it go."""
    ctx.log.info("summarising", prompt=input["prompt"])
    sources = ["inbox", "calendar", "tickets", "pull-requests", "incidents"]
    counts = {}
    for done, source in enumerate(sources, start=1):
        counts[source] = await ctx.step(f"fetch-{source}", fetch, source, 0.05 + 0.04 * done)
        ctx.progress(done, len(sources), message=f"fetched {source}")
        if input.get("reviewer") and done == 3:
            ctx.emit("waiting.for.review", {"reviewer": input["reviewer"], "items": sum(counts.values())})
            await HOLD["summary"].wait()
    ctx.emit("summary_ready", {"items": sum(counts.values())})
    return {"prompt": input["prompt"], "counts": counts}


@workflow(name="send-invoice")
async def send_invoice(ctx: RunContext, input: dict) -> dict:
    amount = await ctx.step("price", fetch, "price", 0.02)
    if input["customer"] == "acme":
        raise ConnectionError("payment gateway timed out after 30 s")
    ctx.log.info("invoice sent", customer=input["customer"], amount=amount)
    return {"customer": input["customer"], "invoice": f"INV-{amount:04d}"}


@workflow(name="reindex-search")
async def reindex_search(ctx: RunContext, input: dict) -> dict:
    for shard in range(input["shards"]):
        await ctx.step(f"shard-{shard}", fetch, f"shard-{shard}", 0.03)
        ctx.progress(shard + 1, input["shards"])
    if input.get("hold"):
        await HOLD[input["hold"]].wait()
    return {"shards": input["shards"]}


async def admit_history(served: Served) -> str:
    """Runs of every kind, oldest first, and the id of the one left running."""
    rt = served.runtime
    ended = []
    for n in range(4):
        ended.append(await workflows.start(daily_summary, input={"prompt": f"What happened on day {n + 1}?"}, runtime=rt))
        await anyio.sleep(0.05)
    for customer in ["globex", "acme", "initech", "umbrella", "acme"]:
        ended.append(await workflows.start(send_invoice, input={"customer": customer}, key=f"invoice-{customer}-{len(ended)}", runtime=rt))
        await anyio.sleep(0.05)
    HOLD["reindex"] = anyio.Event()
    cancelled = await workflows.start(reindex_search, input={"shards": 4, "hold": "reindex"}, runtime=rt)
    ended.append(await workflows.start(reindex_search, input={"shards": 6}, runtime=rt))
    for receipt in ended:
        await runs.wait(receipt.run_id, timeout=10, runtime=rt)
    await anyio.sleep(0.3)
    await runs.cancel(cancelled.run_id, runtime=rt)
    HOLD["summary"] = anyio.Event()
    running = await workflows.start(daily_summary, input={"prompt": "What happened today?", "reviewer": "ops-oncall"}, runtime=rt)
    return running.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1440x900", help="viewport WIDTHxHEIGHT in CSS pixels (default 1440x900)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where to save them (default docs/images)")
    parser.add_argument("--theme", choices=["light", "dark"], default="light", help="the system theme to show (default light)")
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    access = LinkAccess()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime([daily_summary, send_invoice, reindex_search], store=f"sqlite:///{tmp}/flue.db")
        make_app = lambda rt: create_app(rt, dashboard=True, **access.app_options())  # noqa: E731
        with served_in_background(runtime, make_app) as served, chromium(size) as driver:
            running = served.call(admit_history, served)
            driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": args.theme}]}
            )
            driver.get(access.link(f"{served.url}/dashboard/"))
            wait_for(driver, lambda d: len(d.find_elements("css selector", "#rows tr")) >= 12, message="runs listed")
            time.sleep(2.5)  # the arrival highlight fades
            driver.save_screenshot(str(args.out / "dashboard-runs.png"))
            driver.get(f"{served.url}/dashboard/runs/{running}")
            wait_for(driver, lambda d: d.find_elements("css selector", '#timeline li[data-type="waiting.for.review"]'), message="timeline")
            wait_for(driver, lambda d: d.find_element("css selector", "#live").get_attribute("data-state") == "live")
            time.sleep(0.5)
            driver.save_screenshot(str(args.out / "dashboard-run.png"))
            served.call(HOLD["summary"].set)
    for name in ("dashboard-runs.png", "dashboard-run.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()

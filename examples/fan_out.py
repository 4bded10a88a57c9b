"""Fan-out to child runs and fan-in of their results.

``resize-album`` starts one ``resize-one`` child run per image and waits for all of them; while it
waits it is ``waiting`` in the store and holds no worker slot. Run it with ``python examples/fan_out.py``
(runs are stored in SQLite under ``.flue/``; ``flue runs --parent <run id>`` lists the children).
"""

from __future__ import annotations

from contextlib import suppress

import anyio

from flue_core import RunContext, Runtime, runs, workflow, workflows
from flue_core.cli.stopping import sigterm_as_ctrl_c


async def resize(image: str) -> dict:
    await anyio.sleep(0.05)  # stands in for real work
    return {"image": image, "bytes": 1000 + len(image)}


@workflow(name="resize-one")
async def resize_one(ctx: RunContext, input: dict) -> dict:
    return await ctx.step("resize", resize, input["image"])


@workflow(name="resize-album")
async def resize_album(ctx: RunContext, input: dict) -> dict:
    children = [await ctx.start_child(resize_one, input={"image": image}) for image in input["images"]]
    results = await ctx.wait_for_all(children)
    return {"resized": len(results), "bytes": sum(result["bytes"] for result in results)}


async def main() -> None:
    async with Runtime([resize_one, resize_album]):
        receipt = await workflows.start(resize_album, input={"images": [f"photo-{n}.jpg" for n in range(5)]})
        print("album run:", receipt.run_id)
        print("result:", await runs.result(receipt.run_id, timeout=60))
        children = await runs.list(parent=receipt.run_id)
        print("children:", ", ".join(f"{child.run_id} ({child.status})" for child in children.runs))


if __name__ == "__main__":
    with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):  # a deploy's SIGTERM stops it as Ctrl-C does
        anyio.run(main)

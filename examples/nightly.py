"""A nightly schedule: ``nightly-report`` runs at 02:00 Berlin time, every night, exactly once.

Run ``python examples/nightly.py``: the runtime creates the schedule declared on the workflow and
admits a run at each tick for as long as it runs (any number of processes may run it: each tick still
runs once). ``--every-minute`` adds a schedule that ticks every minute, to watch one fire; Ctrl-C stops.
``flue schedules list`` shows the schedules afterwards.
"""

from __future__ import annotations

import argparse
from contextlib import suppress

import anyio

from flue_core import RunContext, Runtime, runs, schedules, workflow
from flue_core.cli.stopping import sigterm_as_ctrl_c


@workflow(name="nightly-report", schedule="0 2 * * *", schedule_timezone="Europe/Berlin", schedule_input={"scope": "all"})
async def nightly_report(ctx: RunContext, input: dict) -> dict:
    # ctx.key is "schedule:<name>:<tick time>": the tick this run belongs to.
    ctx.log.info("building the report", tick=ctx.key)
    rows = await ctx.step("count", lambda: 42)
    return {"scope": input["scope"], "rows": rows}


async def main(every_minute: bool) -> None:
    async with Runtime([nightly_report]):
        if every_minute:
            await schedules.create("report-every-minute", nightly_report, "* * * * *", input={"scope": "demo"})
        for schedule in await schedules.list():
            state = "paused" if schedule.paused else "active"
            print(f"{schedule.name}: {schedule.cron} ({schedule.timezone}) → {schedule.workflow}, {state}")
        print("waiting for ticks; Ctrl-C to stop")
        seen: set[str] = set()
        while True:
            for record in (await runs.list(workflow="nightly-report", limit=5)).runs:
                if record.run_id not in seen and record.finished:
                    seen.add(record.run_id)
                    print(f"{record.key}: {record.status} {record.result}")
            await anyio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--every-minute", action="store_true", help="also tick every minute, to watch a run start")
    with sigterm_as_ctrl_c(), suppress(KeyboardInterrupt):  # a deploy's SIGTERM stops it as Ctrl-C does
        anyio.run(main, parser.parse_args().every_minute)

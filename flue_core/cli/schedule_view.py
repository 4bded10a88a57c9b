"""What ``flue schedules`` prints for people: the schedules as a table, and one schedule (``show``)
with its next ticks and the runs it started. Times are the machine's local time, as elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flue_core.cli.view import Output, status_style
from flue_core.models import utc_now
from flue_core.schedule_overview import ScheduledRun, ScheduleOverview


def schedules_table(found: Sequence[ScheduleOverview], out: Output) -> list[str]:
    """Schedules as aligned columns: name, workflow, cron, zone, state, next tick, last tick. A paused
    schedule's next tick is the one it would run, its state says it will not."""
    rows = [
        (
            s.name,
            s.workflow,
            s.cron,
            s.timezone,
            "paused" if s.paused else "active",
            _local(s.next_ticks[0]) if s.next_ticks else "",
            "" if s.last_tick is None else _local(s.last_tick),
        )
        for s in found
    ]
    header = ("SCHEDULE", "WORKFLOW", "CRON", "ZONE", "STATE", "NEXT TICK", "LAST TICK")
    return _table(header, rows, out, styles=[None, None, None, None, _state_style])


def schedule_lines(schedule: ScheduleOverview, out: Output) -> list[str]:
    """One schedule: its definition, its next ticks (with how far off), and its last runs."""
    state = out.style("paused", "yellow") if schedule.paused else out.style("active", "green")
    lines = [
        f"{out.style(schedule.name, 'bold')}  {schedule.workflow}  '{schedule.cron}' in {schedule.timezone}"
        f"  {state}  catchup {schedule.catchup}"
    ]
    lines.append("")
    heading = "NEXT TICKS (paused: it would run at)" if schedule.paused else "NEXT TICKS"
    lines.append(out.style(heading, "bold"))
    now = utc_now()
    lines.extend(f"{_local(tick)}  {out.style(_from_now(tick, now), 'dim')}" for tick in schedule.next_ticks)
    if not schedule.next_ticks:
        lines.append(out.style("none asked for", "dim"))
    if schedule.last_runs is None:
        return lines
    lines.append("")
    if not schedule.last_runs:
        lines.append(out.style("LAST RUNS", "bold"))
        lines.append(out.style("none yet (or none among its workflow's recent runs)", "dim"))
        return lines
    rows = [_run_row(run) for run in schedule.last_runs]
    header = ("LAST RUNS", "STATUS", "TICK", "CREATED", "DURATION")
    lines.extend(_table(header, rows, out, styles=[None, status_style]))
    return lines


def _run_row(run: ScheduledRun) -> tuple[str, ...]:
    took = "" if run.started_at is None or run.ended_at is None else f"{(run.ended_at - run.started_at).total_seconds():.2f} s"
    return (run.run_id, run.status.value, "" if run.tick is None else _local(run.tick), _local(run.created_at), took)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], out: Output, styles: list) -> list[str]:
    """Aligned columns, the header bold; ``styles[i](cell)`` colours column ``i`` of a row."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...], styled: bool) -> str:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        for i, style in enumerate(styles):
            if styled and style is not None:
                cells[i] = out.style(cells[i], style(row[i]))
        return "  ".join(cells).rstrip()

    return [out.style(fmt(header, False), "bold"), *(fmt(row, True) for row in rows)]


def _state_style(state: str) -> str | None:
    return "yellow" if state == "paused" else None


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _from_now(moment: datetime, now: datetime) -> str:
    """``in 3 min``, ``in 2 h 5 min``, ``in 4 d 6 h``; ``due`` once it has come."""
    minutes = int((moment - now).total_seconds() // 60)
    if minutes < 0:
        return "due"
    if minutes < 60:
        return f"in {minutes} min" if minutes else "in less than a minute"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
    days, hours = divmod(hours, 24)
    return f"in {days} d {hours} h" if hours else f"in {days} d"

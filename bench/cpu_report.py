"""The Markdown table of ``bench/run cpu``: microseconds of CPU per run by phase, one column per setup."""

from __future__ import annotations

from typing import Any

from bench.cpu_phases import GARBAGE, LOOP_REST, PHASES

NAMES = {"memory": "memory", "sqlite": "SQLite", "redis": "Redis"}
OTHER_THREADS = "other threads"


def heading(column: str) -> str:
    store, where = column.split()
    return NAMES.get(store, store) + (", HTTP" if where == "http" else "")


def _us(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) < 0.5:
        return "·"
    return f"{value:.0f}"


def table(summary: dict[str, Any], columns: list[str]) -> str:
    """Rows: phases (µs of CPU per run, user and system together), then totals per thread and process,
    user and system, the store server's own CPU and the rate. ``·``: under half a microsecond."""
    bare = summary.get("bare")
    heads = [heading(c) for c in columns] + (["bare Starlette route"] if bare else [])
    lines = ["| µs of CPU per run | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    order = [phase for phase, _ in PHASES] + [LOOP_REST, OTHER_THREADS, GARBAGE]
    for phase in order:
        values = [summary[c]["phases_us"].get(phase) for c in columns]
        if all(v is None or abs(v) < 0.5 for v in values):
            continue
        lines.append(f"| {phase} | " + " | ".join(_us(v) for v in values) + (" |  |" if bare else " |"))

    def row(label: str, values: list[str], bare_value: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(values) + (f" | {bare_value} |" if bare else " |"))

    totals = [sum(summary[c]["threads_us"].values()) for c in columns]
    row("**CPU per run**", [f"**{t:.0f}**" for t in totals], f"**{bare['cpu_us']:.0f}**" if bare else "")
    row("of it user / system (rusage)", [f"{summary[c]['user_us']:.0f} / {summary[c]['sys_us']:.0f}" for c in columns])
    row("the event loop's thread", [_us(summary[c]["threads_us"].get("main")) for c in columns])
    if any("connection" in summary[c]["threads_us"] for c in columns):
        row("SQLite's connection thread", [_us(summary[c]["threads_us"].get("connection")) for c in columns])
    if any("redis_us" in summary[c] for c in columns):
        row("Redis server (its own process)", [_us(summary[c].get("redis_us")) for c in columns])
    row("runs per second", [f"{summary[c]['runs_per_s']:,.0f}" for c in columns], f"{bare['runs_per_s']:,.0f}" if bare else "")
    return "\n".join(lines)


def comparison(before: dict[str, Any], after: dict[str, Any], columns: list[str]) -> str:
    """CPU per run and rate of two trees measured round by round: before, after, and their ratio."""
    heads = [heading(c) for c in columns]
    lines = ["| the same runs, two trees | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    cpu = {label: [sum(tree[c]["threads_us"].values()) for c in columns] for label, tree in (("before", before), ("after", after))}
    rate = {label: [tree[c]["runs_per_s"] for c in columns] for label, tree in (("before", before), ("after", after))}
    lines.append("| CPU per run, before → after | " + " | ".join(f"{b:.0f} → {a:.0f} µs" for b, a in zip(cpu["before"], cpu["after"])) + " |")
    lines.append("| after / before | " + " | ".join(f"{a / b:.2f}×" for b, a in zip(cpu["before"], cpu["after"])) + " |")
    lines.append("| runs per second, before → after | " + " | ".join(f"{b:,.0f} → {a:,.0f}" for b, a in zip(rate["before"], rate["after"])) + " |")
    return "\n".join(lines)

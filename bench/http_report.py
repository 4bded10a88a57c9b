"""The tables of the HTTP benchmark, and the checks its results must pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

POST_MODES = ("sqlite", "memory", "bare")
SSE_MODES = ("sqlite", "memory")
LABELS = {"sqlite": "SQLite (default store)", "memory": "memory store", "bare": "bare Starlette route"}

Row = tuple[str, Callable[[dict[str, Any]], Any], str]  # label, what to show of a column, format

#: The CPU rows of every table: whether the server, the load generator or other programs were the limit.
CPU_ROWS: list[Row] = [
    ("server CPU (% of one core)", lambda r: r["server_cpu_pct"], "{:.0f} %"),
    ("load generator CPU (% of one core)", lambda r: r["client_cpu_pct"], "{:.0f} %"),
    ("other programs' CPU meanwhile", lambda r: r["other_cpu_pct"], "{:.0f} %"),
]
POST_ROWS: list[Row] = [
    ("requests per second", lambda r: r["per_s"], "{:,.0f}/s"),
    ("latency p50", lambda r: r["p50_ms"], "{:.2f} ms"),
    ("latency p99", lambda r: r["p99_ms"], "{:.2f} ms"),
    ("status codes", lambda r: ", ".join(f"{c} × {n:,}" for c, n in r["statuses"].items()), "{}"),
    ("server CPU per request", lambda r: 1e4 * r["server_cpu_pct"] / r["per_s"], "{:.0f} µs"),
    *CPU_ROWS,
    ("last run completed after the last answer", lambda r: r["drain_s"] * 1000, "{:.0f} ms"),
]
SSE_ROWS: list[Row] = [
    ("latency p50", lambda r: r["p50_ms"], "{:.2f} ms"),
    ("latency p99", lambda r: r["p99_ms"], "{:.2f} ms"),
    ("latency max", lambda r: r["max_ms"], "{:.2f} ms"),
    ("until the first follower had it, p50 / p99",
     lambda r: (r["first_follower_p50_ms"], r["first_follower_p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
    ("until every follower had it, p50 / p99",
     lambda r: (r["all_followers_p50_ms"], r["all_followers_p99_ms"]), "{0[0]:.2f} / {0[1]:.2f} ms"),
    ("ticks per follower (min / max)",
     lambda r: (r["ticks_received_min"], r["ticks_received_max"]), "{0[0]:,} / {0[1]:,}"),
    ("followers with every tick exactly once", lambda r: (r["followers_with_every_tick_once"], r["followers"]),
     "{0[0]} of {0[1]}"),
    ("followers that saw a duplicate", lambda r: r["followers_with_duplicate_events"], "{}"),
    ("emit rate achieved", lambda r: r["emit_rate_per_s"], "{:.1f}/s"),
    ("events per SSE data frame", lambda r: r["events_received"] / r["data_frames"], "{:.2f}"),
    ("server CPU per data frame", lambda r: r["server_cpu_per_frame_us"], "{:.0f} µs"),
    ("load generator CPU per data frame", lambda r: r["client_cpu_per_frame_us"], "{:.0f} µs"),
    *CPU_ROWS,
]


def _table(title: str, columns: dict[str, dict[str, Any]], rows: list[Row]) -> list[str]:
    """A Markdown table of ``rows`` with one column per mode (``—`` where a figure does not apply)."""
    header = "| measure | " + " | ".join(LABELS[m] for m in columns) + " |"
    lines = [title, "", header, "|---|" + "---:|" * len(columns)]
    for label, pick, unit in rows:
        cells = []
        for column in columns.values():
            try:
                cells.append(unit.format(pick(column)))
            except (KeyError, TypeError):
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def table(results: dict[str, Any]) -> str:
    """The Markdown tables of ``bench/README.md``."""
    settings, lines = results["settings"], []
    post = {mode: results["post"][mode] for mode in POST_MODES if mode in results["post"]}
    if post:
        title = f"`POST /workflows/noop`, {settings['clients']} concurrent clients, {settings['requests']:,} requests"
        lines += _table(title, post, POST_ROWS)
    for rate in settings["rates"]:
        sse = {mode: results["sse"][mode][f"{rate:g}"] for mode in SSE_MODES if mode in results["sse"]}
        if sse:
            events = next(iter(sse.values()))["events_each"]
            title = f"`ctx.emit` → SSE, {settings['followers']} followers of one run, {events:,} events at {rate:g}/s"
            lines += _table(title, sse, SSE_ROWS)
    return "\n".join(lines).rstrip()


def check(results: dict[str, Any]) -> list[str]:
    """What the run must show: every POST answered 202, every follower got every tick once."""
    problems = []
    for mode, r in results["post"].items():
        if set(r["statuses"]) != {"202"}:
            problems.append(f"{mode}: POST status codes {r['statuses']}")
    for mode, by_rate in results["sse"].items():
        for rate, r in by_rate.items():
            if r["followers_with_every_tick_once"] != r["followers"] or r["followers_with_duplicate_events"]:
                problems.append(f"{mode} at {rate}/s: not every follower received every tick exactly once")
    return problems

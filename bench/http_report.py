"""The tables of the HTTP benchmark, and the checks its results must pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

POST_MODES = ("sqlite", "memory", "starlette", "asgi")
SSE_MODES = ("sqlite", "memory")
#: The servers of the POST measurement: asyncio + h11 (uvicorn without its optional dependencies), and
#: uvloop + httptools (what ``flue_core.http.serve`` and the ``flue`` command use where installed).
STACKS = ("h11", "uvloop")
STACK_LABELS = {"h11": "asyncio + h11", "uvloop": "uvloop + httptools"}
LABELS = {
    "sqlite": "SQLite (default store)",
    "memory": "memory store",
    "starlette": "bare Starlette route",
    "asgi": "bare ASGI callable",
}

Row = tuple[str, Callable[[dict[str, Any]], Any], str]  # label, what to show of a column, format

#: The CPU rows of every table: whether the server, the load generator or other programs were the limit.
CPU_ROWS: list[Row] = [
    ("server CPU (% of one core)", lambda r: r["server_cpu_pct"], "{:.0f} %"),
    ("load generator CPU (% of one core)", lambda r: r["client_cpu_pct"], "{:.0f} %"),
    ("other programs' CPU meanwhile", lambda r: r["other_cpu_pct"], "{:.0f} %"),
]
POST_ROWS: list[Row] = [
    ("requests per second", lambda r: r["per_s"], "{:,.0f}/s"),
    ("requests per second, every round", lambda r: r["rounds_per_s"], "{}"),
    ("latency p50", lambda r: r["p50_ms"], "{:.2f} ms"),
    ("latency p99", lambda r: r["p99_ms"], "{:.2f} ms"),
    ("status codes (all rounds)", lambda r: ", ".join(f"{c} × {n:,}" for c, n in sorted(r["statuses"].items())), "{}"),
    ("socket errors (all rounds)", lambda r: sum(r["errors"].values()), "{}"),
    ("server CPU per request", lambda r: r["server_cpu_per_request_us"], "{:.0f} µs"),
    ("server CPU (% of one core)", lambda r: r["server_cpu_pct"], "{:.0f} %"),
    ("wrk CPU (% of one core)", lambda r: r["client_cpu_pct"], "{:.0f} %"),
    ("other programs' CPU meanwhile", lambda r: r["other_cpu_pct"], "{:.0f} %"),
    ("last run completed after the last answer", lambda r: r["drain_s"] * 1000, "{:,.0f} ms"),
    ("runs admitted and executed per second", lambda r: r["executed_per_s"], "{:,.0f}/s"),
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


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def post_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One column of the POST table from its rounds: the median of each figure, the rate of every
    round, and the status codes and socket errors of all rounds together."""
    out: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = _median([r[key] for r in rounds if key in r])
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in rounds:
        for code, n in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    out["statuses"], out["errors"] = statuses, errors
    out["rounds_per_s"] = " / ".join(f"{r['per_s']:,.0f}" for r in rounds)
    return out


def table(results: dict[str, Any]) -> str:
    """The Markdown tables of ``bench/README.md``."""
    settings, lines = results["settings"], []
    for stack in STACKS:
        measured = results["post"].get(stack, {})
        post = {mode: post_summary(measured[mode]) for mode in POST_MODES if mode in measured}
        if post:
            title = (
                f"`POST /workflows/noop` served by {STACK_LABELS[stack]}: wrk, {settings['connections']} connections,"
                f" {settings['post_seconds']:g} s per round, median of {settings['rounds']} rounds"
            )
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
    for stack, modes in results["post"].items():
        for mode, rounds in modes.items():
            for r in rounds:
                if set(r["statuses"]) != {"202"} or any(r["errors"].values()):
                    problems.append(f"{stack}, {mode}: POST status codes {r['statuses']}, socket errors {r['errors']}")
    for mode, by_rate in results["sse"].items():
        for rate, r in by_rate.items():
            if r["followers_with_every_tick_once"] != r["followers"] or r["followers_with_duplicate_events"]:
                problems.append(f"{mode} at {rate}/s: not every follower received every tick exactly once")
    return problems

"""What the ``flue`` command prints: NDJSON for programs, text lines and a live view for people.

NDJSON is one JSON object per line and nothing else. Text is one line per event; on a terminal it
adds colours and a progress bar, kept on the last line and redrawn in place, fed by ``progress``
events (``{"current", "total"?, "message"?}``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from typing import Any, TextIO

from flue_core.models import QueuedFor, Event, RunRecord

_STYLES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
#: Colour of each event type's label; ``log`` events are coloured by level, custom events magenta.
_TYPE_STYLES = {
    "run_queued": "cyan",
    "run_start": "cyan",
    "run_retry": "yellow",
    "run_interrupted": "yellow",
    "progress": "cyan",
    "step": "blue",
}
_LEVEL_STYLES = {"debug": "dim", "info": "blue", "warning": "yellow", "error": "red"}
_STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "queued": "cyan",
    "running": "blue",
}
_STATUS_MARKS = {"completed": "✔", "failed": "✘", "cancelled": "■"}
_LABEL_WIDTH = 11  # the longest label, "interrupted"
_BAR_WIDTH = 24


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_json(event: Event) -> str:
    """The NDJSON line of an event: the event as stored, plus its stream ``offset``."""
    return dumps({**event.model_dump(mode="json"), "offset": event.offset})


class Output:
    """Where a command writes, and how: ``ndjson`` or ``text``; ``live`` (redrawn progress bar)
    and colours only on a terminal. ``NO_COLOR`` turns colours off."""

    def __init__(self, stream: TextIO, format: str | None = None) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self.format = format or ("text" if self.tty else "ndjson")
        self.live = self.tty and self.format == "text"
        self.color = self.live and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"

    @property
    def ndjson(self) -> bool:
        return self.format == "ndjson"

    def line(self, text: str) -> None:
        """Write one line and flush it (followers of a pipe see each line as it happens)."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def style(self, text: str, style: str | None) -> str:
        if not self.color or not style:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    @property
    def width(self) -> int:
        return shutil.get_terminal_size((100, 24)).columns


class EventView:
    """Prints a run's events as they arrive: every event (``show_events``) or only the final status.

    On a live terminal the latest progress stays on the last line as a bar. ``close`` clears it.
    """

    def __init__(self, out: Output, *, show_events: bool = True) -> None:
        self.out = out
        self.show_events = show_events
        self._bar: str | None = None

    def event(self, event: Event) -> None:
        out = self.out
        if out.ndjson:
            if self.show_events:
                out.line(event_json(event))
            return
        if event.type == "progress" and out.live:
            self._draw_bar(progress_bar(event.data, min(out.width - 1, 100)))
            return
        if self.show_events or event.type == "run_end":
            self._clear_bar()
            out.line(event_line(event, out))
            if event.type == "run_end":
                self._bar = None
            elif self._bar is not None:
                self._draw_bar(self._bar)

    def close(self) -> None:
        self._clear_bar()
        self._bar = None

    def _draw_bar(self, text: str) -> None:
        self._bar = text
        self.out.stream.write("\r\x1b[2K" + self.out.style(text, "cyan"))
        self.out.stream.flush()

    def _clear_bar(self) -> None:
        if self._bar is not None:
            self.out.stream.write("\r\x1b[2K")
            self.out.stream.flush()


def progress_bar(data: dict[str, Any], width: int) -> str:
    """``[██████░░░░] 2/3  67%  message`` (a count alone when there is no ``total``), cut to ``width``."""
    current = data.get("current", 0)
    total = data.get("total")
    message = data.get("message") or ""
    if isinstance(total, (int, float)) and total > 0 and isinstance(current, (int, float)):
        share = max(0.0, min(1.0, current / total))
        filled = round(share * _BAR_WIDTH)
        text = f"[{'█' * filled}{'░' * (_BAR_WIDTH - filled)}] {_number(current)}/{_number(total)} {share:4.0%}"
    else:
        text = f"… {_number(current)}"
    if message:
        text += f"  {message}"
    return text[:width]


def event_line(event: Event, out: Output) -> str:
    """One event as a line of text: local time, a label, then what happened."""
    time = event.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
    label, style, text = _describe(event)
    if event.type == "run_end":
        return f"{out.style(time, 'dim')} {out.style(f'{label:<{_LABEL_WIDTH}}', style)} {out.style(text, 'bold')}"
    return f"{out.style(time, 'dim')} {out.style(f'{label:<{_LABEL_WIDTH}}', style)} {text}"


def _describe(event: Event) -> tuple[str, str | None, str]:
    data = event.data
    kind = event.type
    if kind == "run_queued":
        text = str(data.get("workflow", ""))
        if data.get("key"):
            text += f"  key={data['key']}"
        if data.get("input") is not None:
            text += f"  input={dumps(data['input'])}"
        return "queued", _TYPE_STYLES[kind], text
    if kind == "run_start":
        return "started", _TYPE_STYLES[kind], f"attempt {data.get('attempt', '?')}"
    if kind == "log":
        level = str(data.get("level", "info"))
        text = str(data.get("message", ""))
        attributes = data.get("attributes") or {}
        if attributes:
            text += "  " + " ".join(f"{k}={dumps(v)}" for k, v in attributes.items())
        return level, _LEVEL_STYLES.get(level), text
    if kind == "progress":
        return "progress", _TYPE_STYLES[kind], progress_bar(data, 10_000)
    if kind == "step":
        how = "replayed" if data.get("replayed") else f"{data.get('durationMs', '?')} ms"
        return "step", _TYPE_STYLES[kind], f"{data.get('name', '')} ({how})"
    if kind == "run_retry":
        error = data.get("error") or {}
        text = f"attempt {data.get('attempt', '?')} failed: {error.get('message', '')}; retrying in {data.get('delay', '?')} s"
        return "retry", _TYPE_STYLES[kind], text
    if kind == "run_interrupted":
        return "interrupted", _TYPE_STYLES[kind], f"attempt {data.get('attempt', '?')} stopped; {data.get('action', '')}"
    if kind == "step_retry":
        error = data.get("error") or {}
        text = f"{data.get('name', '')} try {data.get('attempt', '?')} failed: {error.get('message', '')}; again in {data.get('delay', '?')} s"
        return "retry", _TYPE_STYLES["run_retry"], text
    if kind == "run_waiting":
        return "waiting", "cyan", _waiting_text(data)
    if kind == "run_resume":
        return "resumed", _TYPE_STYLES["run_start"], f"attempt {data.get('attempt', '?')}"
    if kind in ("signal_received", "signal_delivered", "signal_timeout"):
        label = {"signal_received": "signal", "signal_delivered": "delivered", "signal_timeout": "timed out"}[kind]
        text = str(data.get("name", ""))
        if kind == "signal_received":
            text += (f"  key={data['key']}" if data.get("key") else "") + f"  data={dumps(data.get('data'))}"
        return label, "magenta", text
    if kind == "child_started":
        return "child", "cyan", f"{data.get('runId', '')} {data.get('workflow', '')}"
    if kind == "run_end":
        return _end(data)
    return kind, "magenta", dumps(data)


def _waiting_text(data: dict[str, Any]) -> str:
    waiting_for = data.get("for") or {}
    text = str(waiting_for.get("kind", ""))
    if waiting_for.get("name"):
        text += f" {waiting_for['name']}"
    if waiting_for.get("run_ids"):
        text += f" ({len(waiting_for['run_ids'])})"
    if data.get("until"):
        text += f" until {data['until']}"
    return text


def _end(data: dict[str, Any]) -> tuple[str, str | None, str]:
    status = str(data.get("status", "ended"))
    text = f"{_STATUS_MARKS.get(status, '')} {status}".strip()
    if data.get("durationMs") is not None:
        text += f" in {data['durationMs'] / 1000:.2f} s"
    error = data.get("error")
    if error:
        text += f"  [{error.get('code', 'error')}] {error.get('message', '')}"
    elif status == "completed":
        text += f"  result {dumps(data.get('result'))}"
    return "end", _STATUS_STYLES.get(status), text


def records_table(records: Iterable[RunRecord], out: Output) -> list[str]:
    """Runs as aligned columns: id, workflow, status, created (local time), duration; and, when a
    run of the page has them, how often it recovered from an interruption, the run it re-runs, and
    what a run that has not started waits for."""
    records = list(records)
    recovered = any(r.recoveries for r in records)
    reruns = any(r.rerun_of for r in records)
    queued = any(r.queued_for for r in records)
    rows = [
        (
            r.run_id,
            r.workflow,
            r.status.value,
            r.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            "" if r.duration_ms is None else f"{r.duration_ms / 1000:.2f} s",
            *([str(r.recoveries or "")] if recovered else []),
            *([r.rerun_of or ""] if reruns else []),
            *([queued_text(r.queued_for)] if queued else []),
        )
        for r in records
    ]
    header = ("RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION")
    header += ("RECOVERIES",) * recovered + ("RERUN OF",) * reruns + ("WAITS FOR",) * queued
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...], status_style: str | None) -> str:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        cells[2] = out.style(cells[2], status_style)
        return "  ".join(cells).rstrip()

    lines = [out.style(fmt(header, None), "bold")]
    lines.extend(fmt(row, _STATUS_STYLES.get(row[2])) for row in rows)
    return lines


def queued_text(queued: QueuedFor | None) -> str:
    """What a run that has not started waits for, in a few words (its ``message`` says it in full)."""
    if queued is None:
        return ""
    key = "" if queued.key is None else f" of {queued.key!r}"
    until = "" if queued.until is None else f" until {queued.until.astimezone().strftime('%H:%M:%S')}"
    if queued.kind == "slot":
        return f"slot{key} ({queued.running}/{queued.limit} running)"
    if queued.kind == "rate_limit":
        return f"rate limit{key}{until}"
    if queued.kind == "debounce":
        return f"debounce{key}{until}"
    return "a worker"


def status_style(status: str) -> str | None:
    """The colour a run's status is shown in."""
    return _STATUS_STYLES.get(status)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

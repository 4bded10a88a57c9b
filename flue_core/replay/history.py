"""Run histories: what a replay check reads (a run's record, its stored durable calls in the order they
were saved, its undelivered signals and its children's records), where it reads them from, and the
JSON-lines file ``flue runs export`` writes them to.

The file's first line says what it is (``{"flue": "run-histories", "version": 1, ...}``); each further
line is one run: ``{"run": <record>, "calls": [[key, value], ...], "signals": [...], "children": [...]}``.
A file of another version, or a line that is not a history, is an :class:`UnsupportedHistory`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
from pydantic import ValidationError

from flue_core.call_keys import split_key
from flue_core.errors import ConfigurationError, UnsupportedHistory
from flue_core.models import UNFINISHED, RunRecord, format_timestamp, utc_now
from flue_core.snapshot import dumps, loads

FORMAT = "run-histories"
#: Bytes of the file read per hop to a worker thread (whole lines).
BATCH = 1 << 20
VERSION = 1
CHILD = "#child"


@dataclass(frozen=True, slots=True)
class PendingSignal:
    """A signal in a run's mailbox that no wait has taken yet."""

    signal_id: str
    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class RunHistory:
    """One run as a replay check sees it: its record, its stored durable calls (key and JSON text,
    in the order they were saved), the signals waiting in its mailbox (unfinished runs only) and the
    records of the child runs its ``start_child`` calls name (those still stored)."""

    record: RunRecord
    calls: tuple[tuple[str, str], ...]
    signals: tuple[PendingSignal, ...] = ()
    children: Mapping[str, RunRecord] = field(default_factory=dict)

    def child_ids(self) -> list[str]:
        return child_ids(self.calls)


def child_ids(calls: Iterable[tuple[str, str]]) -> list[str]:
    """The run ids of the children the stored ``start_child`` calls name."""
    return [json.loads(text)["runId"] for key, text in calls if split_key(key)[0] == CHILD]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which runs to read: ``run_ids`` (every one must exist), or every run, or with ``unfinished``
    only those that have not ended; with ``workflows``, only runs of those workflows."""

    run_ids: tuple[str, ...] | None = None
    unfinished: bool = False
    workflows: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.run_ids is not None and self.unfinished:
            raise ConfigurationError("Select runs by id or with unfinished=True, not both.")

    def keeps(self, record: RunRecord) -> bool:
        return (not self.unfinished or record.status in UNFINISHED) and (
            self.workflows is None or record.workflow in self.workflows
        )


class HistoryReader(ABC):
    """Reads run histories from somewhere without writing anything there. Made by a
    ``flue_history_reader`` hook for a store URL, or :class:`FileHistories` for an exported file."""

    #: Where the histories come from, as users name it (a store URL, a file path).
    source: str = ""

    @abstractmethod
    def histories(self, selection: Selection) -> AsyncIterator[RunHistory]:
        """The selected runs' histories. Ids of ``selection.run_ids`` that name no run are skipped
        (the caller reports them)."""

    async def close(self) -> None:
        """Release what reading held (connections). Idempotent."""


# -- the file -----------------------------------------------------------------------------------------


def header(source: str) -> str:
    return dumps({"flue": FORMAT, "version": VERSION, "exportedAt": format_timestamp(utc_now()), "source": source})


def history_line(history: RunHistory) -> str:
    """One history as a line of the file (without its newline)."""
    return dumps(
        {
            "run": history.record.model_dump(mode="json"),
            "calls": [[key, json.loads(text)] for key, text in history.calls],
            "signals": [{"signalId": s.signal_id, "name": s.name, "data": s.data} for s in history.signals],
            "children": [child.model_dump(mode="json") for child in history.children.values()],
        }
    )


def parse_line(text: str, where: str) -> RunHistory:
    try:
        line = loads(text)
        record = RunRecord.model_validate(line["run"])
        calls = tuple((str(key), dumps(value)) for key, value in line["calls"])
        signals = tuple(PendingSignal(s["signalId"], s["name"], s.get("data")) for s in line.get("signals", ()))
        children = {child.run_id: child for child in map(RunRecord.model_validate, line.get("children", ()))}
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise UnsupportedHistory(f"{where} is not a run history: {_reason(exc)}", details={"where": where}) from None
    return RunHistory(record, calls, signals, children)


def check_header(text: str, source: str) -> None:
    try:
        head = loads(text)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("flue") != FORMAT:
        raise UnsupportedHistory(
            f"{source} is not a file of run histories (its first line is not what `flue runs export` writes).",
            details={"source": source},
        )
    if head.get("version") != VERSION:
        raise UnsupportedHistory(
            f"{source} holds run histories of format version {head.get('version')!r}; this version of Flue"
            f" reads version {VERSION}. Export them again with this version.",
            details={"source": source, "version": head.get("version"), "supported_version": VERSION},
        )


class FileHistories(HistoryReader):
    """Histories from a file ``flue runs export`` wrote."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.source = str(path)

    async def histories(self, selection: Selection) -> AsyncIterator[RunHistory]:
        wanted = None if selection.run_ids is None else set(selection.run_ids)
        try:
            file = await anyio.to_thread.run_sync(lambda: open(self.path, encoding="utf-8"))  # noqa: SIM115
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read {self.source}: {exc.strerror or exc}.", details={"source": self.source}
            ) from None
        with file:
            check_header(await anyio.to_thread.run_sync(file.readline), self.source)
            number = 1
            while True:  # a batch of lines per hop to the thread that reads them
                lines = await anyio.to_thread.run_sync(file.readlines, BATCH)
                if not lines:
                    return
                for text in lines:
                    number += 1
                    if not text.strip():
                        continue
                    history = parse_line(text, f"line {number} of {self.source}")
                    record = history.record
                    if (wanted is None or record.run_id in wanted) and selection.keeps(record):
                        yield history


async def write_histories(histories: AsyncIterator[RunHistory], out: IO[str], source: str) -> int:
    """Write the file: its header, then one line per history; how many were written."""
    out.write(header(source) + "\n")
    count = 0
    async for history in histories:
        out.write(history_line(history) + "\n")
        count += 1
    return count


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return f"{exc.error_count()} problem(s) in its record"
    if isinstance(exc, KeyError):
        return f"it lacks {exc.args[0]!r}"
    return str(exc) or type(exc).__name__

"""The replay check and the export of histories, as Python functions (``flue replay`` and
``flue runs export`` call these)."""

from __future__ import annotations

import sys
import contextlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pluggy

from flue_core.discovery import WorkflowRegistry, WorkflowSource, as_workflows
from flue_core.errors import ConfigurationError, RunNotFound
from flue_core.plugins import plugin_manager
from flue_core.replay.engine import RUN_LIMIT
from flue_core.replay.history import FileHistories, HistoryReader, Selection, write_histories
from flue_core.replay.report import ReplayReport
from flue_core.replay.run import replay_run
from flue_core.replay.store_histories import StoreHistories
from flue_core.runtime import Runtime
from flue_core.store import RunStore

Source = str | RunStore


async def check(
    workflows: WorkflowSource | Iterable[WorkflowSource] | Runtime,
    *,
    store: Source | None = None,
    from_file: str | Path | None = None,
    run_ids: Iterable[str] | None = None,
    unfinished: bool = False,
    workflow_names: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
    limit: float = RUN_LIMIT,
) -> ReplayReport:
    """Replay stored run histories against ``workflows`` (the code about to be deployed: workflows, a
    module or package name, a list of those, or a :class:`Runtime`, which is never opened) and report
    every run that would diverge.

    The histories come from ``store`` (a store URL, read without writing through its plugin's
    ``flue_history_reader``, or an open :class:`RunStore`) or ``from_file`` (what ``flue runs export``
    wrote). ``run_ids`` checks those runs (each must exist: :class:`RunNotFound`), ``unfinished`` only
    runs that have not ended; by default every run. ``workflow_names`` keeps the runs of those
    workflows only (a store several applications share). No step is executed, no signal sent, no
    run started and nothing written. See :mod:`flue_core.replay`.
    """
    registry, pm = _application(workflows, plugins)
    selection = _selection(run_ids, unfinished, workflow_names)
    reader = open_reader(pm, store=store, from_file=from_file)
    report = ReplayReport(source=reader.source)
    try:
        async for history in reader.histories(selection):
            report.runs.append(await replay_run(history, registry, limit=limit))
    finally:
        await reader.close()
    _all_found(selection, {run.run_id for run in report.runs}, reader.source)
    return report


async def export(
    to: str | Path | IO[str],
    *,
    store: Source | None = None,
    run_ids: Iterable[str] | None = None,
    unfinished: bool = False,
    workflow_names: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
) -> int:
    """Write the histories of ``store``'s runs (every run, ``run_ids``, or the ``unfinished`` ones) to
    ``to`` (a path, ``"-"`` for standard output, or an open text file) as JSON lines, for
    :func:`check` to read elsewhere (``from_file``); returns how many. ``workflow_names`` keeps the
    runs of those workflows only. Reads without writing."""
    if store is None:
        raise ConfigurationError("export needs the store to read: a store URL or an open RunStore.")
    selection = _selection(run_ids, unfinished, workflow_names)
    reader = open_reader(plugin_manager(plugins), store=store, from_file=None)
    found: set[str] = set()

    async def histories():  # type: ignore[no-untyped-def]
        async for history in reader.histories(selection):
            found.add(history.record.run_id)
            yield history

    try:
        with _output(to) as out:
            count = await write_histories(histories(), out, reader.source)
    finally:
        await reader.close()
    _all_found(selection, found, reader.source)
    return count


def open_reader(pm: pluggy.PluginManager, *, store: Source | None, from_file: str | Path | None) -> HistoryReader:
    """A reader of the histories in ``store`` or ``from_file`` (exactly one of them)."""
    if (store is None) == (from_file is None):
        raise ConfigurationError("Read run histories either from a store or from a file (flue runs export), not both or neither.")
    if from_file is not None:
        return FileHistories(from_file)
    if isinstance(store, RunStore):
        return StoreHistories(store)
    if not isinstance(store, str) or not store:
        raise ConfigurationError(f"store is a store URL or an open RunStore, not {store!r}.")
    reader = pm.hook.flue_history_reader(url=store)
    if reader is None:
        scheme = store.split("://", 1)[0] if "://" in store else store
        raise ConfigurationError(
            f"No installed plugin reads {scheme}:// stores without writing to them (the flue_history_reader"
            " hook). Export the runs from a process that has the store open (flue_core.replay.export(path,"
            " store=runtime.target.store)) and check the file instead (--from).",
            details={"store": store},
        )
    return reader


def _application(workflows: Any, plugins: Iterable[object]) -> tuple[WorkflowRegistry, pluggy.PluginManager]:
    if isinstance(workflows, Runtime):
        return workflows.registry, workflows.pm
    registry = WorkflowRegistry(as_workflows(workflows))
    if not len(registry):
        raise ConfigurationError("The replay check needs the new code's workflows; none were given or found.")
    return registry, plugin_manager(plugins)


def _selection(run_ids: Iterable[str] | None, unfinished: bool, workflow_names: Iterable[str] | None) -> Selection:
    if isinstance(run_ids, str) or isinstance(workflow_names, str):
        raise ConfigurationError("run_ids and workflow_names are lists of strings, not one string.")
    return Selection(
        None if run_ids is None else tuple(run_ids),
        unfinished,
        None if workflow_names is None else frozenset(workflow_names),
    )


def _all_found(selection: Selection, found: set[str], source: str) -> None:
    missing = [run_id for run_id in selection.run_ids or () if run_id not in found]
    if missing:
        raise RunNotFound(
            f"{len(missing)} of the runs asked for are not in {source}: {', '.join(missing[:10])}.",
            details={"run_ids": missing},
        )


@contextmanager
def _output(to: str | Path | IO[str]) -> Iterator[IO[str]]:
    if isinstance(to, (str, Path)) and str(to) == "-":
        yield sys.stdout
        sys.stdout.flush()
    elif isinstance(to, (str, Path)):
        part = f"{to}.part"  # the file appears whole or not at all
        try:
            file = open(part, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigurationError(f"Cannot write {to}: {exc.strerror or exc}.", details={"to": str(to)}) from None
        try:
            with file:
                yield file
            os.replace(part, to)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(part)
            raise
    else:
        yield to

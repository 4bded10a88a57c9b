"""The replay check: does new code still replay the runs already stored? (``docs/testing.md``)

    report = await replay.check("myapp.workflows", from_file="histories.jsonl", unfinished=True)
    assert report.ok, str(report)

Each stored history (a run's record and its durable calls, in the order they were saved) is
re-executed against the new code without executing a step, sending a signal, starting a run or
writing anything; each run that would take another path is reported with the position, what the
history holds there and what the new code asked for. ``flue replay`` is the same on the command
line, and :func:`export` (``flue runs export``) writes histories to a file for checks elsewhere.
"""

from flue_core.replay.check import check, export, open_reader
from flue_core.replay.history import FileHistories, HistoryReader, PendingSignal, RunHistory, Selection
from flue_core.replay.report import KINDS, Divergence, ReplayReport, RunReplay
from flue_core.replay.run import replay_run
from flue_core.replay.store_histories import StoreHistories

__all__ = [
    "KINDS",
    "Divergence",
    "FileHistories",
    "HistoryReader",
    "PendingSignal",
    "ReplayReport",
    "RunHistory",
    "RunReplay",
    "Selection",
    "StoreHistories",
    "check",
    "export",
    "open_reader",
    "replay_run",
]

"""What a replay check found: per run, whether the new code follows its history (:class:`RunReplay`),
the first :class:`Divergence` where it does not, and for the whole check a :class:`ReplayReport`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flue_core.models import UNFINISHED, RunStatus

#: The kinds of divergence, stable like error codes.
KINDS = {
    "workflow_missing": "the new code has no workflow of the run's name",
    "input_invalid": "the run's stored input does not validate against the new input type",
    "signal_invalid": "a signal's stored data does not validate against the new signal model",
    "call_mismatch": "the new code asks for another durable call than the history holds at that position",
    "child_mismatch": "the new code starts a child run differently than the history holds",
    "raised": "the new code raises where the history goes on",
}


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where new code stops following a run's history.

    ``position`` counts the run's stored durable calls from 1 in the order they were saved (one past
    the last for the call the run waits in; ``None`` for the input, the mailbox or the workflow
    itself). ``history`` is what the history holds there, ``asked`` what the new code asked for.
    """

    run_id: str
    workflow: str
    kind: str
    message: str
    position: int | None = None
    history: str | None = None
    asked: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = {"kind": self.kind, "message": self.message, "position": self.position, "history": self.history, "asked": self.asked}
        if self.details:
            body["details"] = self.details
        return body


@dataclass(frozen=True, slots=True)
class RunReplay:
    """One run checked: ``replayed`` of its ``calls`` stored durable calls were asked for by the new
    code as the history holds them. ``incomplete`` says why the check could not go on without
    anything being wrong (a child run no longer stored, code that blocks outside durable calls).
    ``old_paths`` and ``new_paths`` name the patches (``ctx.patched``) the run takes each way."""

    run_id: str
    workflow: str
    status: RunStatus
    calls: int
    replayed: int
    divergence: Divergence | None = None
    incomplete: str | None = None
    old_paths: tuple[str, ...] = ()
    new_paths: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.divergence is None

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "workflow": self.workflow,
            "status": self.status.value,
            "calls": self.calls,
            "replayed": self.replayed,
            "divergence": None if self.divergence is None else self.divergence.to_dict(),
            "incomplete": self.incomplete,
            "oldPaths": list(self.old_paths),
            "newPaths": list(self.new_paths),
        }


@dataclass
class ReplayReport:
    """Every run a replay check looked at, from ``source``. ``ok`` when none diverges."""

    source: str = ""
    runs: list[RunReplay] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def divergences(self) -> list[Divergence]:
        return [run.divergence for run in self.runs if run.divergence is not None]

    @property
    def incomplete(self) -> list[RunReplay]:
        return [run for run in self.runs if run.incomplete is not None]

    def patches(self) -> dict[str, list[str]]:
        """Each patch the new code asked about, with the unfinished runs that still take its old path
        (an empty list: no run needs the old branch any more, it can be removed)."""
        found: dict[str, list[str]] = {}
        for run in self.runs:
            for change in run.new_paths:
                found.setdefault(change, [])
            for change in run.old_paths:
                runs = found.setdefault(change, [])
                if run.unfinished:
                    runs.append(run.run_id)
        return dict(sorted(found.items()))

    def lines(self) -> Iterator[str]:
        """The report in words, a line each: divergences, runs not checked through, patches, a summary."""
        for divergence in self.divergences:
            yield f"{divergence.run_id}  {divergence.workflow}  {divergence.kind}: {divergence.message}"
        for run in self.incomplete:
            yield f"{run.run_id}  {run.workflow}  not checked through: {run.incomplete}"
        for change, runs in self.patches().items():
            if runs:
                shown = ", ".join(runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
                yield f"patch {change!r}: {len(runs)} unfinished run(s) take the old path ({shown})"
            else:
                yield f"patch {change!r}: no unfinished run takes the old path; the old branch can be removed"
        yield self.summary()

    def summary(self) -> str:
        unfinished = sum(run.unfinished for run in self.runs)
        diverging = len(self.divergences)
        text = f"checked {len(self.runs)} run(s) ({unfinished} unfinished) from {self.source}: "
        text += "no divergence" if not diverging else f"{diverging} diverge"
        if self.incomplete:
            text += f", {len(self.incomplete)} not checked through"
        return text

    def __str__(self) -> str:
        return "\n".join(self.lines())

"""Re-running finished runs: a new run with the same input that takes over the old run's stored steps.

A re-run is a new run (new id, new stream: a closed stream stays closed) admitted through the one
admission pipeline, so validation and admission policies apply as for any start. It takes over the
results the old run stored, in the order they were saved, up to ``from_step``: those calls replay
instead of running again, and the code after them runs afresh. A fixed bug in step 7 is re-run from
step 7, with steps 1 to 6 replayed from the old run's results.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flue_core import arguments
from flue_core.admission import admit
from flue_core.errors import InvalidRerun, RunNotFound, RunUnfinished
from flue_core.models import RunReceipt, RunRecord, RunStatus
from flue_core.store import RunStore

if TYPE_CHECKING:
    from flue_core.runtime import Runtime

#: The stored calls of child runs (``#child``, ``#child#2``...): see :mod:`flue_core.durable`.
_CHILD = "#child"


async def rerun(
    runtime: Runtime, run_id: str, *, from_step: str | None = None, key: str | None = None, principal: Any = None
) -> RunReceipt:
    """Admit a re-run of the finished run ``run_id`` and return its receipt.

    ``from_step`` names a step (``"charge"``, or ``"charge#2"`` for its second call): results saved
    before it are taken over, it and everything after run again. It must name a step the run stored,
    except for a run that did not complete, where a step without a result (the one that failed) takes
    over every stored result. ``None`` takes over every stored result. A child run still going is
    never taken over (nor anything saved after it): the re-run starts its own. ``key`` is an
    idempotency key in the workflow's key space, as for ``start()``.
    """
    store = runtime.target.store
    record = await store.get(run_id) if arguments.is_run_id(run_id) else None
    if record is None:
        raise RunNotFound(f"Run {run_id!r} was not found.", details={"run_id": ascii(run_id)})
    if not record.finished:
        raise RunUnfinished(
            f"Run {run_id} is {record.status.value}: only a run that has ended can be re-run.",
            details={"run_id": run_id, "status": record.status.value},
        )
    workflow = runtime.registry.resolve(record.workflow)
    steps = await _taken_over(store, record, await store.load_steps(run_id), from_step)
    return await admit(runtime, workflow, record.input, key=key, source="rerun", principal=principal, rerun_of=run_id, steps=steps)


async def _taken_over(store: RunStore, record: RunRecord, stored: dict[str, str], from_step: Any) -> tuple[tuple[str, str], ...]:
    names = list(stored)
    if from_step is not None:
        if not isinstance(from_step, str) or not from_step or from_step.startswith("#"):
            raise InvalidRerun(f"from_step must be a step's name, not {from_step!r}.", details={"from_step": repr(from_step)})
        if from_step in stored:
            names = names[: names.index(from_step)]
        elif record.status == RunStatus.COMPLETED:
            raise InvalidRerun(
                f"Run {record.run_id} stored no step {from_step!r}; its steps are: {', '.join(_step_names(names)) or 'none'}.",
                details={"run_id": record.run_id, "from_step": from_step, "steps": _step_names(names)},
            )
    taken: list[tuple[str, str]] = []
    for name in names:
        if name == _CHILD or name.startswith(_CHILD + "#"):
            child = await store.get(json.loads(stored[name])["runId"])
            if child is None or not child.finished:
                break  # its end would wake the old run, not the new one: the re-run starts its own
        taken.append((name, stored[name]))
    return tuple(taken)


def _step_names(names: list[str]) -> list[str]:
    return [name for name in names if not name.startswith("#")]

"""The keys durable calls are stored under: a name and an occurrence (``fetch``, ``fetch#2``...).

Flue's own calls have names starting with ``#`` (``#sleep``, ``#signal:<name>``, ``#child``), which step
names may not. Two kinds of key hold no position in a run's sequence of calls: the times ``ctx.now()``
read (``#now``...) and the markers of ``ctx.patched()`` (``#patch:<id>``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flue_core.errors import StepError
from flue_core.snapshot import is_text

#: The longest step name, and patch id.
MAX_NAME = 200
#: Keys of the markers ``ctx.patched()`` stores, and of the times ``ctx.now()`` read.
PATCH = "#patch:"
NOW = "#now"
DEADLINE = "/deadline"


def check_change_id(change: Any) -> None:
    if not isinstance(change, str) or not change or len(change) > MAX_NAME or "#" in change or not is_text(change):
        raise StepError(f"A patch needs an id of 1-{MAX_NAME} characters of valid Unicode without '#', not {change!r}.")


def split_key(key: str) -> tuple[str, int]:
    """A call's key as (name, occurrence): ``fetch#2`` is ``("fetch", 2)``, ``#sleep`` ``("#sleep", 1)``;
    a signal wait's ``/deadline`` belongs to its wait."""
    key = key.removesuffix(DEADLINE)
    head, sep, tail = key.rpartition("#")
    if sep and head and tail.isdigit():
        return head, int(tail)
    return key, 1


def positioned(key: str) -> bool:
    """Whether a stored key is a call of the run's sequence (not a time ``ctx.now()`` read, nor a patch
    marker, which belong to no position)."""
    return not key.startswith((NOW, PATCH))


def history_continues(steps: dict[str, str], seen: Counter[str]) -> bool:
    """Whether ``steps`` (a run's stored calls) holds a call this execution has not asked for yet:
    the run's history goes on past the point the execution is at."""
    for key in steps:
        if positioned(key):
            name, occurrence = split_key(key)
            if seen[name] < occurrence:
                return True
    return False

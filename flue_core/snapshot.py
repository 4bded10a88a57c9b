"""JSON snapshots: the one definition of a value a run may carry (input, step results, results).

Accepted: ``None``, ``bool``, ``int``, finite ``float``, ``str``, lists and tuples (become lists), and
dicts with ``str`` keys, nested. Rejected with the path of the first offender: NaN and infinities,
``bytes``, sets, dates, decimals, class instances and cycles. Pydantic models are taken as their JSON
form. The snapshot is a deep copy, so callers may mutate their value afterwards.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel

_SCALARS = (str, bool, int, type(None))


class NotJSON(ValueError):
    """The value cannot be carried as JSON; ``path`` locates the offending part."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


def snapshot(value: Any, label: str = "value") -> Any:
    """A deep JSON copy of ``value``, or :class:`NotJSON` naming where it fails."""
    return _copy(value, label, set())


def _copy(value: Any, path: str, active: set[int]) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(path, "must be a finite number")
        return value
    if isinstance(value, BaseModel):
        # A model's JSON form can still hold NaN or infinities (pydantic keeps them as floats).
        return _copy(value.model_dump(mode="json"), path, active)
    if isinstance(value, dict):
        marker = id(value)
        if marker in active:
            raise NotJSON(path, "contains a reference cycle")
        active.add(marker)
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSON(path, f"has a non-string key {key!r}")
            copied[key] = _copy(item, f"{path}.{key}", active)
        active.discard(marker)
        return copied
    if isinstance(value, (list, tuple)):
        marker = id(value)
        if marker in active:
            raise NotJSON(path, "contains a reference cycle")
        active.add(marker)
        copied_list = [_copy(item, f"{path}[{i}]", active) for i, item in enumerate(value)]
        active.discard(marker)
        return copied_list
    raise NotJSON(path, f"must not contain {type(value).__name__} values")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: The strict decoder behind :func:`loads`, for callers that need ``raw_decode``.
STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(text: str) -> Any:
    """Parse JSON text strictly: ``NaN`` and ``Infinity``, which Python's parser accepts, are refused
    (``ValueError``), so nothing parsed here can fail to be written back as JSON."""
    return STRICT_DECODER.decode(text)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON text of an already snapshotted value (one shared encoder: this is on hot paths)."""
    return _ENCODER.encode(value)

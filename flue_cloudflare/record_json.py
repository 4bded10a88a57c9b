"""A run's record as JSON text and back, without pydantic's work per field.

Records cross every call between a Worker and a run's object and are stored in the run's row and the
index's copy; in a Worker, pydantic's ``model_dump`` of one costs ~0.25 ms and ``model_validate``
~0.18 ms (its field serializers and validators call back into Python), several times per run. The
text is the one pydantic writes (the fields by their aliases, in their order), with ``input`` and
``result`` last: they are any JSON value, nested up to ``flue_core.limits.MAX_DEPTH`` levels, which
the standard library encodes (pydantic-core built for WebAssembly stops at a lower depth). Reading
trusts the text, which this package wrote; a field the text lacks (stored before the field existed)
takes its default. ``tests/cloudflare/test_record_json.py`` holds both ways to pydantic's.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from flue_core.models import RunRecord, format_timestamp, parse_timestamp

#: Fields written last, by the standard library.
FREE = ("input", "result")

_Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _dump_model(value: BaseModel) -> Any:
    return value.model_dump(mode="json")


def _conversions(annotation: Any) -> tuple[_Convert, _Convert]:
    """How a field of this type is written to JSON and read back (``None`` stays ``None``)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    kinds = [arg for arg in args if arg is not type(None)] or [annotation]
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is datetime:
        return format_timestamp, parse_timestamp
    if isinstance(kind, type) and issubclass(kind, Enum):
        members = {member.value: member for member in kind}
        return (lambda member: member.value), members.__getitem__
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return _dump_model, kind.model_validate
    return _identity, _identity


def _plan() -> list[tuple[str, str, _Convert, _Convert, Any]]:
    plan = []
    for name, field in RunRecord.model_fields.items():
        if name in FREE:
            continue
        write, read = _conversions(field.annotation)
        default = None if field.default is PydanticUndefined else field.default
        plan.append((name, field.alias or name, write, read, default))
    return plan


_PLAN = _plan()
_ABSENT: Any = object()
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps_record(record: RunRecord) -> str:
    values = record.__dict__
    data: dict[str, Any] = {}
    for name, alias, write, _, _ in _PLAN:
        value = values[name]
        data[alias] = None if value is None else write(value)
    for name in FREE:
        data[name] = values[name]
    return _dumps(data)


def loads_record(text: str) -> RunRecord:
    data = json.loads(text)
    fields: dict[str, Any] = {}
    for name, alias, _, read, default in _PLAN:
        value = data.get(alias, _ABSENT)
        fields[name] = default if value is _ABSENT else None if value is None else read(value)
    for name in FREE:
        fields[name] = data.get(name)
    return RunRecord.trusted(**fields)

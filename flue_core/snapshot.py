"""JSON snapshots: the one definition of a value a run may carry (input, step results, results, events).

Accepted: ``None``, ``bool``, ``int`` (at most :data:`~flue_core.limits.MAX_INT_DIGITS` digits), finite
``float``, ``str`` of valid Unicode, lists and tuples (become lists), and dicts with ``str`` keys, nested
at most :data:`~flue_core.limits.MAX_DEPTH` levels. Rejected with the path of the first offender: NaN and
infinities, strings or keys holding lone surrogates (``"\\ud800"``, ``bytes.decode(errors="surrogateescape")``),
``bytes``, sets, dates, decimals, class instances, cycles and deeper nesting. Pydantic models are taken
as their JSON form, unless that form would hide a NaN or an infinity (pydantic writes ``null`` for them
inside ``dict``, ``list`` and ``Any`` fields). The snapshot is a deep copy, so callers may mutate their
value afterwards. Nothing is ever changed silently: a value is copied exactly or refused.
"""

from __future__ import annotations

import json
import math
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from flue_core.limits import MAX_DEPTH, MAX_EVENT_SIZE

#: Integers with fewer bits have fewer digits than any int/str conversion limit Python allows (640).
_SMALL_INT_BITS = 2100


class NotJSON(ValueError):
    """The value cannot be carried as JSON; ``path`` locates the offending part."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


def snapshot(value: Any, label: str = "value") -> Any:
    """A deep JSON copy of ``value``, or :class:`NotJSON` naming where it fails."""
    return _copy(value, label, set(), 0)


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode, so that it can be written as UTF-8 (no lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def too_deep(path: str) -> NotJSON:
    return NotJSON(path, f"is nested deeper than {MAX_DEPTH} levels")


def json_form(dump: Callable[..., Any], path: str) -> Any:
    """The JSON form pydantic gives for ``dump(mode="json")`` (a model's ``model_dump``, a type
    adapter's ``dump_python``), refused when it would hide a NaN or an infinity as ``null`` or when
    pydantic cannot serialize the value (nested too deeply for it, a failing serializer)."""
    try:
        _refuse_non_finite(dump(mode="python"), path)
        return dump(mode="json")
    except NotJSON:
        raise
    except ValueError as exc:  # PydanticSerializationError included
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotJSON(path, f"cannot be serialized as JSON ({reason})") from None


def _refuse_non_finite(value: Any, path: str) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotJSON(path, "holds NaN or an infinity, which JSON cannot carry")
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)


def _copy(value: Any, where: Any, active: set[int], depth: int) -> Any:
    # ``where`` is the snapshot's label or ``(parent where, key or index)``: it is made into a path
    # string only for an error, so copying pays no formatting per member.
    kind = type(value)
    if kind is str:
        if not (value.isascii() or is_text(value)):
            raise NotJSON(_path(where), "is not valid Unicode (it holds a lone surrogate)")
        return value
    if kind is int:
        if value.bit_length() > _SMALL_INT_BITS:
            _check_digits(value, where)
        return value
    if value is None or kind is bool:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise NotJSON(_path(where), "must be a finite number")
        return value
    if kind is dict or (kind is not list and isinstance(value, dict)):
        if depth >= MAX_DEPTH:
            raise too_deep(_path(where))
        marker = id(value)
        if marker in active:
            raise NotJSON(_path(where), "contains a reference cycle")
        active.add(marker)
        copied = {}
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise NotJSON(_path(where), f"has a non-string key {_shown(key)}")
            if not (key.isascii() or is_text(key)):
                raise NotJSON(_path((where, key)), "is a key that is not valid Unicode (it holds a lone surrogate)")
            copied[key] = _copy(item, (where, key), active, depth + 1)
        active.discard(marker)
        return copied
    if kind is list or isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise too_deep(_path(where))
        marker = id(value)
        if marker in active:
            raise NotJSON(_path(where), "contains a reference cycle")
        active.add(marker)
        copied_list = [_copy(item, (where, i), active, depth + 1) for i, item in enumerate(value)]
        active.discard(marker)
        return copied_list
    if isinstance(value, str):  # subclasses of the JSON types (an enum.StrEnum, an IntEnum...)
        return _copy(str(value), where, active, depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _copy(int(value), where, active, depth)
    if isinstance(value, float):
        return _copy(float(value), where, active, depth)
    if isinstance(value, BaseModel):
        path = _path(where)
        return _copy(json_form(value.model_dump, path), where, active, depth)
    raise NotJSON(_path(where), f"must not contain {type(value).__name__} values")


def _check_digits(value: int, where: Any) -> None:
    try:
        str(value)
    except ValueError:
        raise NotJSON(_path(where), f"is an integer of more than {sys.get_int_max_str_digits()} digits") from None


def _path(where: Any) -> str:
    """``input.items[2]``; a key that is not plain printable ASCII is shown escaped (``input['\\x00']``),
    so a path is always valid, readable text (paths travel in messages and HTTP envelopes)."""
    parts: list[str] = []
    while isinstance(where, tuple):
        where, key = where
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif key.isascii() and key.isprintable():
            parts.append(f".{key}")
        else:
            parts.append(f"[{ascii(key)}]")
    return str(where) + "".join(reversed(parts))


def _shown(key: Any) -> str:
    try:
        shown = ascii(key)
    except Exception:
        shown = f"of type {type(key).__name__}"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: The strict decoder behind :func:`loads`, for callers that need ``raw_decode``.
STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(text: str) -> Any:
    """Parse JSON text strictly: ``NaN`` and ``Infinity``, which Python's parser accepts, are refused
    (``ValueError``), so nothing parsed here can fail to be written back as JSON. Text nested past
    what the parser can recurse into raises :class:`NotJSON` (:func:`too_deep`); values parsed here
    still go through :func:`snapshot`, which holds them to :data:`~flue_core.limits.MAX_DEPTH`."""
    try:
        return STRICT_DECODER.decode(text)
    except RecursionError:
        raise too_deep("$") from None


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C encoder ``_ENCODER.encode`` builds anew on every call, built once (it is half the cost of
# encoding a small event). Without the cycle check: snapshots have no cycles; should a value with one
# get here, the recursion it causes sends it to ``_ENCODER``, which reports the cycle.
_ENCODE = (
    c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def dumps(value: Any) -> str:
    """Compact JSON text of an already snapshotted value (one shared encoder: this is on hot paths)."""
    if _ENCODE is None:
        return _ENCODER.encode(value)
    try:
        return "".join(_ENCODE(value, 0))
    except RecursionError:
        return _ENCODER.encode(value)


def encoded_size(value: Any) -> int:
    """Bytes of ``value``'s JSON text in UTF-8 (``value`` already snapshotted)."""
    text = dumps(value)
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def event_snapshot(value: Any, label: str) -> Any:
    """:func:`snapshot` of event data, also refused past :data:`~flue_core.limits.MAX_EVENT_SIZE`
    bytes of JSON."""
    copied = snapshot(value, label)
    if not _surely_small(copied) and encoded_size(copied) > MAX_EVENT_SIZE:
        raise NotJSON(label, f"is larger than {MAX_EVENT_SIZE} bytes of JSON")
    return copied


def _surely_small(value: Any) -> bool:
    """Whether ``value`` is a flat object too small to approach MAX_EVENT_SIZE, so that the common
    event need not be encoded to be measured: at most 64 members, keys and strings of at most 1024
    characters (6 bytes each once escaped), integers of at most 4300 digits — under 800 KiB in all."""
    if type(value) is not dict or len(value) > 64:
        return type(value) is str and len(value) <= 1024
    for key, item in value.items():
        if len(key) > 1024:
            return False
        kind = type(item)
        if (kind is str and len(item) > 1024) or kind is dict or kind is list:
            return False
    return True

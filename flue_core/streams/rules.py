"""The rules of :class:`~flue_core.streams.store.StreamStore` (its module docstring states them),
written once over a :class:`~flue_core.streams.rows.StreamTx`.

Every operation checks everything before writing anything, so a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from flue_core.streams import refusals
from flue_core.streams.json_mode import messages_of, record_of
from flue_core.streams.protocol import DEFAULT_CONTENT_TYPE, is_json, media_type
from flue_core.streams.rows import StreamRow, StreamTx
from flue_core.streams.store import Append, Appended, Created, NewStream, Producer, StreamPage


def create(tx: StreamTx, path: str, request: NewStream, now: float) -> Created:
    existing = current(tx, path, now)
    if existing is not None:
        if existing.deleted:
            raise refusals.path_held(path)
        if not _same_config(existing, request):
            raise refusals.other_configuration(path)
        return Created(existing.meta(), created=False)
    content_type = request.content_type
    ttl, expires_at = request.ttl, request.expires_at
    source: StreamRow | None = None
    anchor = 0
    records: list[bytes] = []
    if request.fork is not None:
        fork = request.fork
        source = current(tx, fork.source, now)
        if source is None:
            raise refusals.fork_source_not_found(fork.source)
        if source.deleted:
            raise refusals.fork_source_deleted(fork.source)
        if content_type is None:
            content_type = source.content_type
        elif media_type(content_type) != media_type(source.content_type):
            raise refusals.fork_content_type(content_type, source.content_type)
        anchor = source.tail if fork.offset is None else fork.offset
        if not 0 <= anchor <= source.tail:
            raise refusals.fork_offset_past(source.tail)
        if fork.sub_offset:
            records.append(_sub_offset_prefix(tx, source, anchor, fork.sub_offset))
        if ttl is None and expires_at is None:  # a fork asking for no expiry keeps its source's
            ttl, expires_at = source.ttl, source.expires_at
    content_type = content_type or DEFAULT_CONTENT_TYPE
    records += _records(request.data, content_type, creating=True)
    row = StreamRow(
        id=0,
        path=path,
        content_type=content_type,
        tail=anchor + len(records),
        touched_at=now,
        ttl=ttl,
        expires_at=expires_at,
        closed=request.closed,
        fork_of=None if source is None else source.id,
        fork_at=anchor,
        spec={
            "ttl": request.ttl,
            "expires_at": request.expires_at,
            "fork": None if request.fork is None else [request.fork.source, anchor, request.fork.sub_offset],
        },
    )
    tx.insert(row)
    if records:
        tx.add_records(row.id, anchor + 1, records)
    if source is not None:
        source.forks += 1
        tx.save(source)
    tx.changed.add(path)
    return Created(row.meta(), created=True)


def append_to(tx: StreamTx, path: str, request: Append, now: float) -> Appended:
    row = live(tx, path, now)
    producer = request.producer
    if row.closed:
        if producer is not None and row.closed_by == (producer.id, producer.epoch, producer.seq):
            return Appended(row.meta(), duplicate=True, producer_seq=producer.seq)
        if not request.data and producer is None:  # closing a closed stream: nothing to do
            _touch(tx, row, now)
            return Appended(row.meta())
        raise refusals.closed(path, row.tail)
    if request.data:
        if request.content_type is None:
            raise refusals.content_type_missing()
        if media_type(request.content_type) != media_type(row.content_type):
            raise refusals.content_type(request.content_type, row.content_type)
    elif not request.close:
        raise refusals.empty_append()
    if producer is not None:
        duplicate_of = _check_producer(tx, row, producer)
        if duplicate_of is not None:
            return Appended(row.meta(), duplicate=True, producer_seq=duplicate_of)
    if request.seq is not None and row.stream_seq is not None and request.seq <= row.stream_seq:
        raise refusals.seq_conflict(request.seq, row.stream_seq)
    records = _records(request.data, row.content_type, creating=False)
    if records:
        tx.add_records(row.id, row.tail + 1, records)
        row.tail += len(records)
    if producer is not None:
        tx.set_producer(row.id, producer.id, producer.epoch, producer.seq)
    if request.seq is not None:
        row.stream_seq = request.seq
    if request.close:
        row.closed = True
        row.closed_by = None if producer is None else (producer.id, producer.epoch, producer.seq)
    row.touched_at = now
    tx.save(row)
    tx.changed.add(path)
    return Appended(row.meta(), producer_seq=None if producer is None else producer.seq)


def delete(tx: StreamTx, path: str, now: float) -> None:
    _remove(tx, live(tx, path, now))


def read(tx: StreamTx, path: str, after: int | None, limit: int, max_bytes: int, now: float) -> StreamPage:
    row = live(tx, path, now)
    if row.ttl is not None:
        _touch(tx, row, now)
    if after is None:
        return StreamPage(row.meta(), [], row.tail)
    after = max(after, 0)
    found = list(_gather(tx, row, after, row.tail, _Budget(limit, max_bytes)))
    return StreamPage(row.meta(), [data for _, data in found], found[-1][0] if found else after)


def purge(tx: StreamTx, now: float) -> int:
    paths = tx.expiry_candidates(now)
    for path in paths:
        current(tx, path, now)
    return len(paths)


def current(tx: StreamTx, path: str, now: float) -> StreamRow | None:
    """The stream at ``path`` after applying its expiry: ``None`` if there is none (any more)."""
    row = tx.find(path)
    if row is not None and not row.deleted and row.expired(now):
        _remove(tx, row)
        row = tx.find(path)
    return row


def live(tx: StreamTx, path: str, now: float) -> StreamRow:
    """The stream at ``path``, which must exist and not be soft-deleted."""
    row = current(tx, path, now)
    if row is None:
        raise refusals.not_found(path)
    if row.deleted:
        raise refusals.gone(path)
    return row


# -- helpers -----------------------------------------------------------------------------------------


def _same_config(row: StreamRow, request: NewStream) -> bool:
    spec = row.spec
    asked_type = request.content_type or (row.content_type if request.fork else DEFAULT_CONTENT_TYPE)
    if media_type(asked_type) != media_type(row.content_type) or request.closed != row.closed:
        return False
    if request.ttl != spec["ttl"] or request.expires_at != spec["expires_at"]:
        return False
    fork = spec["fork"]
    if request.fork is None or fork is None:
        return request.fork is None and fork is None
    source, anchor, sub_offset = fork
    asked = request.fork
    return asked.source == source and asked.sub_offset == sub_offset and asked.offset in (None, anchor)


def _records(data: bytes, content_type: str, *, creating: bool) -> list[bytes]:
    if not data:
        return []
    if is_json(content_type):
        record = record_of(data, creating=creating)
        return [] if record is None else [record]
    return [data]


def _check_producer(tx: StreamTx, row: StreamRow, producer: Producer) -> int | None:
    """Raise for a refused producer request; return the last accepted seq for a duplicate, ``None``
    for a request to accept."""
    state = tx.producer(row.id, producer.id)
    if state is None:
        if producer.seq != 0:
            raise refusals.producer_first_seq(producer.id, producer.seq)
        return None
    epoch, last_seq = state
    if producer.epoch < epoch:
        raise refusals.producer_stale_epoch(producer.id, producer.epoch, epoch)
    if producer.epoch > epoch:
        if producer.seq != 0:
            raise refusals.producer_epoch_seq(producer.epoch)
        return None
    if producer.seq <= last_seq:
        return last_seq
    if producer.seq != last_seq + 1:
        raise refusals.producer_gap(producer.id, last_seq, producer.seq)
    return None


def _sub_offset_prefix(tx: StreamTx, source: StreamRow, anchor: int, sub_offset: int) -> bytes:
    """The first ``sub_offset`` bytes (JSON: messages) of the record after ``anchor`` in ``source``."""
    following = next(_gather(tx, source, anchor, anchor + 1, _Budget(1, 0)), None)
    parts: list[bytes] | bytes = b""
    if following is not None:
        parts = messages_of(following[1]) if is_json(source.content_type) else following[1]
    if sub_offset > len(parts):
        raise refusals.sub_offset_past(len(parts))
    if isinstance(parts, bytes):
        return parts[:sub_offset]
    return b",".join(parts[:sub_offset])


class _Budget:
    """How many records and bytes a read may still return (the first record always fits)."""

    def __init__(self, records: int, max_bytes: int) -> None:
        self.records = records
        self.bytes = max_bytes
        self.taken = 0

    def take(self, data: bytes) -> bool:
        if self.records <= 0 or (self.taken and len(data) > self.bytes):
            return False
        self.records -= 1
        self.bytes -= len(data)
        self.taken += 1
        return True


def _gather(tx: StreamTx, row: StreamRow, after: int, upto: int, budget: _Budget) -> Iterator[tuple[int, bytes]]:
    """Records of ``row`` at ``after < position <= upto`` within ``budget``: from its fork sources up
    to its fork offset, then its own."""
    if row.fork_of is not None and after < row.fork_at:
        for found in _gather(tx, tx.load(row.fork_of), after, min(upto, row.fork_at), budget):
            yield found
            after = found[0]
        if after < min(upto, row.fork_at):  # the budget ran out inside the inherited range
            return
    for position, data in tx.records(row.id, max(after, row.fork_at), upto):
        if not budget.take(data):
            return
        yield position, data


def _touch(tx: StreamTx, row: StreamRow, now: float) -> None:
    if row.ttl is not None:
        row.touched_at = now
        tx.save(row)


def _remove(tx: StreamTx, row: StreamRow) -> None:
    """Delete ``row`` — softly while forks read it — and the soft-deleted sources it was the last
    fork of."""
    tx.changed.add(row.path)
    if row.forks > 0:
        row.deleted = True
        tx.save(row)
        return
    tx.drop(row.id)
    if row.fork_of is not None:
        source = tx.load(row.fork_of)
        source.forks -= 1
        if source.deleted and source.forks == 0:
            _remove(tx, source)
        else:
            tx.save(source)

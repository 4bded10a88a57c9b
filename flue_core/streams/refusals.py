"""Every way a stream store refuses a request, one function each, returning the error to raise.

:mod:`flue_core.streams.rules` raises them; a store whose rules run elsewhere (a Redis Lua script)
names the refusal and its arguments, and :func:`refusal` rebuilds the same error from them, so every
backend answers with the same codes, messages and details. Numbers may arrive as decimal text.
"""

from __future__ import annotations

from collections.abc import Sequence

from flue_core.errors import (
    ContentTypeMismatch,
    FlueError,
    InvalidStreamRequest,
    ProducerSequenceGap,
    StaleProducerEpoch,
    StreamClosed,
    StreamConflict,
    StreamGone,
    StreamNotFound,
    StreamSeqConflict,
)
from flue_core.streams.protocol import offset_text


def not_found(path: str) -> FlueError:
    return StreamNotFound(f"No stream at {path}.", details={"path": path})


def gone(path: str) -> FlueError:
    return StreamGone(f"The stream {path} was deleted.", details={"path": path})


def path_held(path: str) -> FlueError:
    return StreamConflict(
        f"The stream {path} was deleted but forks still read it; its path cannot be reused yet.",
        details={"path": path},
    )


def other_configuration(path: str) -> FlueError:
    return StreamConflict(f"A stream exists at {path} with a different configuration.", details={"path": path})


def fork_source_not_found(source: str) -> FlueError:
    return StreamNotFound(f"The fork source {source} does not exist.", details={"source": source})


def fork_source_deleted(source: str) -> FlueError:
    return StreamConflict(f"The fork source {source} was deleted; it cannot be forked.", details={"source": source})


def fork_content_type(content_type: str, source_content_type: str) -> FlueError:
    return ContentTypeMismatch(
        f"A fork has its source's content type, {source_content_type}, not {content_type}.",
        details={"content_type": content_type, "source_content_type": source_content_type},
    )


def fork_offset_past(source_tail: int | str) -> FlueError:
    return InvalidStreamRequest(
        "The fork offset is beyond the end of the source stream.",
        details={"header": "Stream-Fork-Offset", "source_tail": offset_text(int(source_tail))},
    )


def sub_offset_past(available: int | str) -> FlueError:
    return InvalidStreamRequest(
        "The fork sub-offset is past the end of the record after the fork offset.",
        details={"header": "Stream-Fork-Sub-Offset", "available": int(available)},
    )


def closed(path: str, tail: int | str) -> FlueError:
    return StreamClosed(
        f"The stream {path} is closed; nothing more can be appended.",
        details={"path": path, "next_offset": offset_text(int(tail))},
    )


def content_type_missing() -> FlueError:
    return InvalidStreamRequest("An append needs a Content-Type header.", details={"header": "Content-Type"})


def content_type(content_type: str, stream_content_type: str) -> FlueError:
    return ContentTypeMismatch(
        f"The stream's content type is {stream_content_type}, not {content_type}.",
        details={"content_type": content_type, "stream_content_type": stream_content_type},
    )


def empty_append() -> FlueError:
    return InvalidStreamRequest("An append needs a body (or Stream-Closed: true to close the stream).")


def seq_conflict(seq: str, last_seq: str) -> FlueError:
    return StreamSeqConflict(
        f"Stream-Seq {seq!r} is not greater than the last one, {last_seq!r}.",
        details={"seq": seq, "last_seq": last_seq},
    )


def producer_first_seq(producer_id: str, seq: int | str) -> FlueError:
    return ProducerSequenceGap(
        f"Producer {producer_id!r} is new here; its first seq must be 0.",
        details={"expected_seq": 0, "received_seq": int(seq)},
    )


def producer_stale_epoch(producer_id: str, epoch: int | str, current_epoch: int | str) -> FlueError:
    return StaleProducerEpoch(
        f"Producer {producer_id!r} has moved on to epoch {current_epoch}; epoch {epoch} is fenced off.",
        details={"current_epoch": int(current_epoch)},
    )


def producer_epoch_seq(epoch: int | str) -> FlueError:
    return InvalidStreamRequest(
        "A new producer epoch must start at seq 0.", details={"header": "Producer-Seq", "epoch": int(epoch)}
    )


def producer_gap(producer_id: str, last_seq: int | str, seq: int | str) -> FlueError:
    return ProducerSequenceGap(
        f"Producer {producer_id!r} skipped from seq {last_seq} to {seq}.",
        details={"expected_seq": int(last_seq) + 1, "received_seq": int(seq)},
    )


_BY_NAME = {
    function.__name__: function
    for function in (
        not_found, gone, path_held, other_configuration, fork_source_not_found, fork_source_deleted,
        fork_content_type, fork_offset_past, sub_offset_past, closed, content_type_missing, content_type,
        empty_append, seq_conflict, producer_first_seq, producer_stale_epoch, producer_epoch_seq, producer_gap,
    )
}


def refusal(name: str, args: Sequence[object]) -> FlueError:
    """The error of the refusal called ``name`` (a function of this module) with ``args``."""
    return _BY_NAME[name](*args)  # type: ignore[operator]

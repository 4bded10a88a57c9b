"""General Durable Streams in Redis: shared by every process and host that opens the same URL.

Each operation is one call of the Lua script ``lua/streams.lua`` (``EVALSHA``), so it is atomic
without locks or client round trips: the rules of :mod:`flue_core.streams.rules`, over one hash per
stream, one Redis Stream of records per stream (entry ``<position>-0``), one hash of producer states,
and a sorted set of expiry times (``docs/redis.md`` lists the keys). What does not depend on stored
state — parsing a JSON body into messages — is done here before the call.

Readers in every process are woken by the change feed (:mod:`flue_node_like.redis_subscriptions`):
the script publishes the paths it changed, atomically with the change.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` an acknowledged write
survives a crash of Redis; with ``everysec`` up to a second of writes can be lost to a crash of the
machine (see ``docs/redis.md``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from flue_core.errors import InvalidStreamRequest, StoreUnavailable, UnsupportedSchemaVersion
from flue_core.store import Capabilities, ChangeListener
from flue_core.streams.json_mode import messages_in
from flue_core.streams.protocol import is_json, media_type
from flue_core.streams.refusals import refusal
from flue_core.streams.store import Append, Appended, Created, NewStream, StreamMeta, StreamPage, StreamStore
from flue_node_like.redis_connection import RedisSettings, aioredis, connect, load_script, redis_errors
from flue_node_like.redis_subscriptions import Subscriptions

__all__ = ["RedisStreamStore"]

#: Operations that may be sent twice: they change nothing but a TTL's renewal and expired streams.
_READS = frozenset({"open", "head", "read", "purge"})
#: Streams removed by one purge call; a larger backlog takes several calls (each holds Redis briefly).
PURGE_BATCH = 500


class RedisStreamStore(StreamStore):
    """Streams in Redis under the URL's key prefix (``redis_connection`` documents the URL).

    ``heartbeat``: seconds of silence after which the change feed checks its connection.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(durable=True, shared=True, feed=True)

    def __init__(
        self, url: str = "redis://localhost:6379/0", *, clock: Callable[[], float] = time.time, heartbeat: float = 5.0
    ) -> None:
        self.settings = RedisSettings.from_url(url)
        self.url = self.settings.url
        self.heartbeat = heartbeat
        self._clock = clock
        self._base = self.settings.key("ds", "")
        self._on_change: ChangeListener = lambda paths: None
        self._client: aioredis.Redis | None = None
        self._script: Any = None
        self._origin = uuid.uuid4().hex
        self.feed: Subscriptions | None = None

    async def open(self, on_change: ChangeListener) -> None:
        self._on_change = on_change
        client = await connect(self.settings)
        try:
            self._script = await load_script(client, self.settings, "streams.lua")
            self._client = client
            header = (await self._call("open"))[0]
            if header["layout"] != header["expected"]:
                raise UnsupportedSchemaVersion(
                    f"The streams under {self._base}* were written in layout {header['layout']};"
                    f" this version of Flue reads layout {header['expected']}.",
                    details={"url": self.url, "layout": header["layout"]},
                )
            feed = Subscriptions(self.settings, self._base, self._origin, heartbeat=self.heartbeat, feed="changes")
            await feed.start(on_change)
            self.feed = feed
        except BaseException:
            self._client = None
            await client.aclose()
            raise

    async def close(self) -> None:
        feed, self.feed = self.feed, None
        client, self._client = self._client, None
        if feed is not None:
            await feed.stop()
        if client is not None:
            await client.aclose()

    async def create(self, path: str, stream: NewStream) -> Created:
        fork = stream.fork
        # The stream's type is the request's, or for a fork without one its source's, unknown here.
        json_mode = None if stream.content_type is None and fork is not None else is_json(stream.content_type or "")
        args: list[Any] = [
            path,
            stream.content_type or "",
            media_type(stream.content_type) if stream.content_type else "",
            "" if stream.ttl is None else str(stream.ttl),
            "" if stream.expires_at is None else repr(float(stream.expires_at)),
            _flag(stream.closed),
            _flag(fork is not None),
            "" if fork is None else fork.source,
            "" if fork is None or fork.offset is None else str(fork.offset),
            "0" if fork is None else str(fork.sub_offset),
        ]
        data, invalid = _data(stream.data, json_mode, creating=True)
        header, _ = await self._call("create", *args, *data, invalid=invalid)
        return Created(_meta(header["meta"]), created=header["created"])

    async def append(self, path: str, append: Append) -> Appended:
        producer = append.producer
        json_mode = append.content_type is not None and is_json(append.content_type)
        args: list[Any] = [
            path,
            _flag(bool(append.data)),
            append.content_type or "",
            media_type(append.content_type) if append.content_type else "",
            _flag(append.close),
            append.seq or "",
            _flag(producer is not None),
            "" if producer is None else producer.id,
            "" if producer is None else str(producer.epoch),
            "" if producer is None else str(producer.seq),
        ]
        data, invalid = _data(append.data, json_mode, creating=False)
        header, _ = await self._call("append", *args, *data, invalid=invalid)
        seq = header.get("producer_seq")
        return Appended(_meta(header["meta"]), duplicate=bool(header.get("duplicate")), producer_seq=None if seq is None else int(seq))

    async def delete(self, path: str) -> None:
        await self._call("delete", path)

    async def head(self, path: str) -> StreamMeta:
        header, _ = await self._call("head", path)
        return _meta(header["meta"])

    async def read(self, path: str, after: int | None, limit: int, max_bytes: int) -> StreamPage:
        header, records = await self._call("read", path, "" if after is None else str(after), str(limit), str(max_bytes))
        return StreamPage(_meta(header["meta"]), records, header["next"])

    async def purge_expired(self) -> int:
        total = 0
        while True:
            header, _ = await self._call("purge", str(PURGE_BATCH))
            total += header["count"]
            if not header["more"]:
                return total

    async def _call(self, op: str, *args: Any, invalid: InvalidStreamRequest | None = None) -> tuple[dict[str, Any], list[bytes]]:
        """One call of the script; the paths it changed are told to the listener, a refusal raised."""
        client = self._client
        if client is None:
            raise StoreUnavailable(f"The Redis stream store {self.url} is closed.")
        keys, argv = [self._base + "paths"], [self._base, op, repr(float(self._clock())), self._origin, *args]
        try:
            with redis_errors(self.settings):
                reply = await self._script(keys=keys, args=argv, client=client)
        except StoreUnavailable:
            # A pooled connection may have died with a Redis restart unnoticed. Reads are tried once more
            # on a fresh one; a write is not, as it may have been applied before its connection broke.
            if op not in _READS:
                raise
            with redis_errors(self.settings):
                reply = await self._script(keys=keys, args=argv, client=client)
        header: dict[str, Any] = json.loads(reply[0])
        changed = header.get("changed")
        if changed:
            self._on_change(changed)
        refused = header.get("refused")
        if refused is not None:
            name, *details = refused
            if name == "invalid_json":
                assert invalid is not None, "the script refused JSON that was not found invalid here"
                raise invalid
            raise refusal(name, details)
        return header, reply[1:]


def _flag(value: bool) -> str:
    return "1" if value else ""


def _data(body: bytes, json_mode: bool | None, *, creating: bool) -> tuple[Sequence[Any], InvalidStreamRequest | None]:
    """The script's data arguments — raw bytes; JSON state ('', 'rec', 'none', 'invalid'); the JSON
    record; its message ends — and the error of an invalid JSON body, raised if the script gets that
    far. ``json_mode`` ``None``: not known yet (a fork taking its source's type), so both forms."""
    if not body:
        return (b"", "", b"", ""), None
    raw = b"" if json_mode else body
    if json_mode is False:
        return (raw, "", b"", ""), None
    try:
        messages = messages_in(body, creating=creating)
    except InvalidStreamRequest as invalid:
        return (raw, "invalid", b"", ""), invalid
    if not messages:
        return (raw, "none", b"", ""), None
    ends, end = [], -1
    for message in messages:
        end += len(message) + 1  # each message, and the comma that joins it to the next
        ends.append(end)
    return (raw, "rec", b",".join(messages), ",".join(map(str, ends)) if len(ends) > 1 else ""), None


def _meta(fields: dict[str, Any]) -> StreamMeta:
    expires_at = fields.get("expires_at")
    return StreamMeta(
        path=fields["path"],
        stream_id=fields["id"],
        content_type=fields["type"],
        tail=fields["tail"],
        closed=fields["closed"],
        ttl=fields.get("ttl"),
        expires_at=None if expires_at is None else float(expires_at),
    )

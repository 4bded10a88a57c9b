"""One ordered, pipelined connection to Redis that survives a broken connection without losing order.

The run store sends every command of a process over one :class:`Link`: commands are written as they
come (several callers share one write and one round trip), Redis answers them in order, and a
process therefore reads its own writes. Replies are parsed by hiredis on an asyncio protocol, which
costs a third of a redis-py client call per command (measured in ``bench/README.md``).

When the connection breaks, or Redis answers that it cannot serve yet (``LOADING`` after a restart,
``READONLY`` after a failover, ``NOSCRIPT`` when it lost the scripts), the link connects again, loads
its scripts, and sends every command that has no answer yet again, in their order. A command may
thus be applied twice: the run store's scripts recognise a repeated operation (see ``lua/runs.lua``),
so each takes effect once. Callers wait meanwhile, at most ``timeout`` seconds from the break; after
that their commands fail with :class:`~flue_core.errors.StoreUnavailable` and are not sent again.
A command unanswered for ``timeout`` seconds on a live connection counts as a break.

Opening checks what a user can get wrong: an unreachable server is
:class:`~flue_core.errors.StoreUnavailable` within ``connect_timeout``; refused credentials, a
database the server lacks or a server older than 6.2 are :class:`~flue_core.errors.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hiredis

from flue_core.errors import ConfigurationError, StoreUnavailable
from flue_node_like.redis_connection import MIN_SERVER_VERSION, RedisSettings, reply_error

log = logging.getLogger("flue.redis")

__all__ = ["Link", "ReplyError", "Wire", "open_wire"]

ReplyError = hiredis.ReplyError
#: Answers that mean "not now": the command was not applied, and is sent again after reconnecting.
_TRANSIENT = ("LOADING", "READONLY", "MASTERDOWN", "NOSCRIPT", "TRYAGAIN", "CLUSTERDOWN", "BUSY ")
MAX_BACKOFF = 1.0


class Wire(asyncio.Protocol):
    """A socket speaking RESP: :meth:`write` packed commands; every reply, in order, goes to
    ``on_reply``; ``on_lost`` is called once when the connection ends."""

    def __init__(self, on_reply: Callable[[Wire, Any], None], on_lost: Callable[[Wire, Exception | None], None]) -> None:
        self._reader = hiredis.Reader(encoding="utf-8")
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        self._turn = False  # a command was written in this turn of the event loop
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.open = True

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self.open:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(exc)
                return
            if reply is False:
                return
            self._on_reply(self, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self.open = False
            self._transport = None
            self._on_lost(self, exc)

    def write(self, packed: bytes) -> None:
        """Send ``packed``: the first command of a turn of the event loop at once, the others of that
        turn together at its end (one system call for a burst of concurrent callers)."""
        if self._turn:
            self._buffer.append(packed)
            return
        self._turn = True
        asyncio.get_running_loop().call_soon(self._flush)
        if self._transport is not None:
            self._transport.write(packed)

    def _flush(self) -> None:
        self._turn = False
        buffered, self._buffer = self._buffer, []
        if self._transport is not None and buffered:
            self._transport.write(b"".join(buffered))

    def abort(self, reason: Exception | None = None) -> None:
        """Drop the connection at once (``on_lost`` follows)."""
        transport = self._transport
        if transport is not None:
            log.debug("flue: dropping a Redis connection: %s", reason)
            transport.abort()


async def open_wire(
    settings: RedisSettings,
    name: str,
    on_reply: Callable[[Wire, Any], None],
    on_lost: Callable[[Wire, Exception | None], None],
    prelude: Sequence[Sequence[Any]] = (),
) -> tuple[Wire, list[Any]]:
    """Connect and authenticate within ``connect_timeout``, select the database, name the client,
    then send ``prelude`` commands; return the wire and the prelude's replies. From then on replies
    go to ``on_reply``. Raises the typed errors of the module docstring."""
    loop = asyncio.get_running_loop()
    waiting: deque[asyncio.Future[Any]] = deque()
    ready = False

    def handshake_reply(wire: Wire, reply: Any) -> None:
        if ready:
            on_reply(wire, reply)
        elif waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def handshake_lost(wire: Wire, exc: Exception | None) -> None:
        if ready:
            on_lost(wire, exc)
            return
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"the connection closed: {exc or 'by the server'}"))

    commands: list[Sequence[Any]] = []
    if settings.password is not None:
        commands.append(("AUTH", settings.username, settings.password) if settings.username else ("AUTH", settings.password))
    if settings.db:
        commands.append(("SELECT", settings.db))
    commands.append(("CLIENT", "SETNAME", name))
    # Redis cuts off a client that sends a bulk string over 16 KB (a script to load) while a password it
    # requires is missing or wrong: the prelude waits for the handshake's replies, which say so.
    rounds = [commands, list(prelude)]
    commands = [command for batch in rounds for command in batch]
    shown = settings.url
    try:
        async with asyncio.timeout(settings.connect_timeout):
            _, wire = await loop.create_connection(
                lambda: Wire(handshake_reply, handshake_lost),
                settings.host,
                settings.port,
                ssl=_tls(settings),
                server_hostname=settings.host if settings.tls else None,
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise StoreUnavailable(f"Cannot reach Redis at {shown}: {exc or 'timed out'}", details={"url": shown}) from None
    try:
        replies: list[Any] = []
        for batch in rounds:
            futures = []
            for command in batch:
                future = loop.create_future()
                waiting.append(future)
                futures.append(future)
                wire.write(hiredis.pack_command(tuple(command)))
            try:
                async with asyncio.timeout(settings.timeout):
                    answers = list(await asyncio.gather(*futures))
            except (ConnectionError, TimeoutError) as exc:
                raise StoreUnavailable(f"Lost the connection to Redis at {shown}: {exc or 'timed out'}", details={"url": shown}) from None
            for command, reply in zip(batch, answers, strict=True):
                if isinstance(reply, ReplyError) and not (command[0] == "CLIENT" and "unknown" in str(reply).lower()):
                    raise reply_error(str(reply), shown)
            replies += answers
    except BaseException:
        wire.abort()
        raise
    ready = True
    return wire, replies[len(commands) - len(prelude) :]


def transient(reply: ReplyError) -> bool:
    return str(reply).startswith(_TRANSIENT)


class _Command:
    __slots__ = ("packed", "future", "sent")

    def __init__(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        self.packed = packed
        self.future = future
        self.sent = 0.0


class Link:
    """The ordered connection of the module docstring. ``scripts`` maps names to Lua sources, loaded
    at every connection; :meth:`script` calls one by name."""

    def __init__(self, settings: RedisSettings, name: str, scripts: Mapping[str, str] = {}) -> None:
        self.settings = settings
        self.name = name
        self.shas = {script: hashlib.sha1(source.encode()).hexdigest() for script, source in scripts.items()}
        self._sources = dict(scripts)
        self._pending: deque[_Command] = deque()
        self._wire: Wire | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        #: How many times the link connected again after losing its connection.
        self.reconnects = 0

    async def open(self) -> None:
        """Connect, check the server and load the scripts; the module docstring lists the errors."""
        self._closed = False
        self._wire, (info, *_) = await self._connect((("INFO", "server"),))
        version_text = next((line.split(":", 1)[1] for line in str(info).splitlines() if line.startswith("redis_version:")), "0")
        version = tuple(int(part) for part in version_text.strip().split(".")[:2] if part.isdigit())
        if version < MIN_SERVER_VERSION:
            self._wire.abort()
            raise ConfigurationError(
                f"Redis at {self.settings.url} is version {version_text.strip()}; Flue needs"
                f" {'.'.join(map(str, MIN_SERVER_VERSION))} or newer.",
                details={"url": self.settings.url, "version": version_text.strip()},
            )
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name=f"flue-redis-watchdog:{self.name}")

    async def close(self) -> None:
        """Fail what is unanswered and drop the connection. Idempotent."""
        self._closed = True
        for task in (self._reconnecting, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._reconnecting = self._watchdog = None
        self._fail(StoreUnavailable(f"The Redis connection to {self.settings.url} is closed."))
        if self._wire is not None:
            self._wire.abort()
            self._wire = None

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply (an error reply is set as its exception)."""
        if self._closed:
            raise StoreUnavailable(f"The Redis connection to {self.settings.url} is closed.")
        command = _Command(hiredis.pack_command(args), asyncio.get_running_loop().create_future())
        self._pending.append(command)
        wire = self._wire
        if wire is not None:
            command.sent = asyncio.get_running_loop().time()
            wire.write(command.packed)
        elif self._reconnecting is None:
            self._start_reconnecting()
        return command.future

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        return self.send("EVALSHA", self.shas[name], len(keys), *keys, *args)

    # -- replies and breaks -------------------------------------------------------------------------

    def _on_reply(self, wire: Wire, reply: Any) -> None:
        if wire is not self._wire or not self._pending:
            return
        if isinstance(reply, ReplyError) and transient(reply):
            log.warning("flue: Redis at %s answered %s; reconnecting", self.settings.url, reply)
            self._break(wire)
            return
        command = self._pending.popleft()
        if command.future.done():
            return
        if isinstance(reply, ReplyError):
            command.future.set_exception(reply)
        else:
            command.future.set_result(reply)

    def _on_lost(self, wire: Wire, exc: Exception | None) -> None:
        if wire is self._wire:
            if not self._closed:
                log.warning("flue: lost the connection to Redis at %s (%s); reconnecting", self.settings.url, exc or "closed")
            self._break(wire)

    def _break(self, wire: Wire) -> None:
        self._wire = None
        wire.abort()
        if not self._closed and self._reconnecting is None:
            self._start_reconnecting()

    def _start_reconnecting(self) -> None:
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name=f"flue-redis-reconnect:{self.name}")

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        backoff = 0.02
        try:
            while not self._closed:
                try:
                    wire, _ = await self._connect()
                except ConfigurationError as exc:  # the server now refuses us: nothing to wait for
                    self._fail(exc)
                    return
                except StoreUnavailable as exc:
                    if loop.time() >= deadline:
                        self._fail(exc)
                        return
                    await asyncio.sleep(min(backoff, max(deadline - loop.time(), 0)))
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                self.reconnects += 1
                self._wire = wire
                now = loop.time()
                for command in self._pending:  # again, in order: the scripts recognise repeats
                    command.sent = now
                    wire.write(command.packed)
                return
        finally:
            self._reconnecting = None

    async def _connect(self, prelude: Sequence[Sequence[Any]] = ()) -> tuple[Wire, list[Any]]:
        loads = [("SCRIPT", "LOAD", source) for source in self._sources.values()]
        wire, replies = await open_wire(self.settings, self.name, self._on_reply, self._on_lost, (*prelude, *loads))
        for reply in replies[len(prelude) :]:
            if isinstance(reply, ReplyError):
                wire.abort()
                raise StoreUnavailable(f"Redis at {self.settings.url} refused a script: {reply}", details={"url": self.settings.url})
        return wire, replies

    def _fail(self, error: Exception) -> None:
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(error)

    async def _watch(self) -> None:
        """Count a command unanswered for ``timeout`` seconds on a live connection as a break."""
        loop = asyncio.get_running_loop()
        limit = self.settings.timeout
        while True:
            await asyncio.sleep(min(limit / 4, 1.0))
            wire = self._wire
            if wire is not None and self._pending and loop.time() - self._pending[0].sent > limit:
                log.warning("flue: Redis at %s did not answer within %s s; reconnecting", self.settings.url, limit)
                self._break(wire)


def _tls(settings: RedisSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    options = dict(settings.tls_options)
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    requirement = options.get("ssl_cert_reqs", "required")
    if requirement != "required":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL if requirement == "optional" else ssl.CERT_NONE
    if "ssl_certfile" in options:
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context

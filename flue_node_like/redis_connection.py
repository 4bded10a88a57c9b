"""Connecting to Redis: one place that turns a ``redis://`` or ``rediss://`` URL into a client.

``redis[s]://[[username]:password@]host[:port][/db][?option=value&...]``, options:

* ``prefix`` — the application's key prefix (default ``flue``): every key the stores use starts with
  ``<prefix>:``, so several applications share one Redis (``docs/redis.md`` lists the keys). Letters,
  digits and ``-_.{}``; braces make it a Redis Cluster hash tag, which keeps every key in one slot.
* ``db`` — the database number, or the URL's path (``/2``), not both; default 0.
* ``connect_timeout`` — seconds to reach the server (default 5); ``timeout`` — seconds a command may
  take before the connection is considered broken (default 10). Both finite, a day at most.
* ``max_connections`` — pool size (default: unbounded).
* ``retention`` — the run store only: how long finished runs are kept, in seconds or with a unit
  (``90s``, ``30m``, ``12h``, ``7d``; at most 100 years); default: kept until pruned.
* ``ssl_cert_reqs`` (``required``, ``optional``, ``none``), ``ssl_ca_certs``, ``ssl_certfile``,
  ``ssl_keyfile`` — ``rediss://`` only.

User name and password are percent-decoded; a ``/``, ``?``, ``#`` or ``@`` in them must be
percent-encoded (``%2F``, ``%3F``, ``%23``, ``%40``). No error, log line or shown URL ever holds the
password, however malformed the URL. A malformed URL or an unknown option raises
:class:`~flue_core.errors.ConfigurationError` when the settings are made; :func:`connect` raises
:class:`~flue_core.errors.StoreUnavailable` for a server it cannot reach in time and
:class:`~flue_core.errors.ConfigurationError` for refused credentials or a database that does not exist.
It never waits longer than the timeouts.

The client never retries a command by itself: a retried script that had already run before its
connection broke would be applied twice. A broken connection is :class:`StoreUnavailable` for that
one call; the pool replaces it for the next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from flue_core.errors import ConfigurationError, StoreUnavailable

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        "The Redis stores need redis-py: install Flue with its redis extra, pip install 'flue[redis]'.",
        name=missing.name,
    ) from missing

__all__ = ["MIN_SERVER_VERSION", "RedisSettings", "connect", "load_script", "redis_errors", "reply_error"]

SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "flue"
#: The oldest server the stores' scripts run on (Lua with effects replication, XADD with explicit ids).
MIN_SERVER_VERSION = (6, 2)
_PREFIX = re.compile(r"[A-Za-z0-9_.{}-]{1,64}")
_CERT_REQS = ("required", "optional", "none")
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_OPTIONS = ("prefix", "db", "connect_timeout", "timeout", "max_connections", "retention", *_TLS_OPTIONS)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest timeout taken, in seconds: longer ones cannot be given to a socket on every platform.
MAX_TIMEOUT = 86400.0
#: The longest retention taken, in seconds (100 years): the cutoff must remain a date.
MAX_RETENTION = 100 * 365 * 86400.0
#: Error replies that no waiting mends: credentials or a database the server refuses.
_REFUSED = ("NOAUTH", "WRONGPASS", "NOPERM", "ERR invalid password", "ERR AUTH", "ERR DB index")
_ENCODE = "a '/', '?', '#' or '@' in a user name or password must be percent-encoded (%2F, %3F, %23, %40)"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where a store's data lives in Redis, parsed from its URL by :meth:`from_url`."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    prefix: str = DEFAULT_PREFIX
    connect_timeout: float = 5.0
    timeout: float = 10.0
    max_connections: int | None = None
    retention: float | None = None
    tls_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        """The settings of ``url`` (the module docstring lists its options); a malformed URL raises
        :class:`~flue_core.errors.ConfigurationError` naming what is wrong, without the password."""
        if not isinstance(url, str):
            raise ConfigurationError(f"A Redis URL is a string like redis://host:6379/0, not a {type(url).__name__}.")
        shown = _redacted(url)
        # The parser's messages quote the URL's parts, which may be pieces of a password: never shown.
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigurationError(f"Malformed Redis URL {shown}; {_ENCODE}.", details={"url": shown}) from None
        misplaced = "@" in url.partition("://")[2] and "@" not in parts.netloc
        if misplaced or "#" in url:  # part of the credentials was taken for the path, query or fragment
            what = "an @ after the host" if misplaced else "a # (Redis URLs have no fragment)"
            raise ConfigurationError(f"Malformed Redis URL {shown}: {what}; {_ENCODE}.", details={"url": shown})
        try:
            port = parts.port or 6379
        except ValueError:
            raise ConfigurationError(
                f"Malformed Redis URL {shown}: the port must be a number from 1 to 65535; {_ENCODE}.",
                details={"url": shown},
            ) from None
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(
                f"Redis URLs start with redis:// or rediss://, not {shown}.", details={"url": shown}
            )
        if not parts.hostname:
            raise ConfigurationError(f"The Redis URL {shown} names no host.", details={"url": shown})
        options = _query(parts.query, shown)
        path_db = parts.path.strip("/")
        if path_db and "db" in options:
            raise ConfigurationError(
                f"The Redis URL {shown} names its database twice (/{path_db} and ?db=): give one.",
                details={"url": shown},
            )
        db_text = options.pop("db", path_db or "0")
        tls_options = tuple((name, options.pop(name)) for name in _TLS_OPTIONS if name in options)
        if tls_options and parts.scheme != "rediss":
            raise ConfigurationError(
                f"{', '.join(name for name, _ in tls_options)} only apply to rediss:// URLs ({shown}).",
                details={"url": shown},
            )
        cert_reqs = dict(tls_options).get("ssl_cert_reqs")
        if cert_reqs is not None and cert_reqs not in _CERT_REQS:
            raise ConfigurationError(
                f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, not {cert_reqs!r}.", details={"url": shown}
            )
        prefix = options.pop("prefix", DEFAULT_PREFIX)
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                f"The key prefix {prefix!r} must be 1-64 letters, digits or -_.{{}} ({shown}).",
                details={"url": shown, "prefix": prefix},
            )
        return cls(
            host=parts.hostname,
            port=port,
            db=_number(db_text, "db", shown, int, minimum=0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
            prefix=prefix,
            connect_timeout=_seconds(options.pop("connect_timeout", "5"), "connect_timeout", shown, MAX_TIMEOUT),
            timeout=_seconds(options.pop("timeout", "10"), "timeout", shown, MAX_TIMEOUT),
            max_connections=_optional_int(options.pop("max_connections", None), shown),
            retention=_retention(options.pop("retention", None), shown),
            tls_options=tls_options,
        )

    @property
    def url(self) -> str:
        """The URL without its password, for messages and logs."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.username or self.password is not None:
            auth = f"{self.username or ''}{':***' if self.password is not None else ''}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}?prefix={self.prefix}"

    def key(self, *parts: str) -> str:
        """A key under this application's prefix: ``key("ds", "paths")`` → ``"flue:ds:paths"``."""
        return ":".join((self.prefix, *parts))

    def client(self) -> aioredis.Redis:
        """A client with these settings (it connects on first use; :func:`connect` checks it)."""
        options: dict[str, Any] = dict(self.tls_options)
        if self.tls:
            options["ssl"] = True
        if self.max_connections is not None:
            options["max_connections"] = self.max_connections
        return aioredis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            # RESP2: with RESP3, redis-py >= 7 stops checking a pooled connection for a close by the
            # server before reusing it (it waits for maintenance notifications instead), so after a
            # Redis restart every idle connection would fail one command.
            protocol=2,
            **options,
        )


async def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client whose server answered, accepted the credentials and is new enough — else a typed error
    (module docstring) within the timeouts. The caller closes it (``await client.aclose()``)."""
    client = settings.client()
    try:
        with redis_errors(settings, connecting=True):
            info = await client.info("server")
        version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:2])
        if version < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"Redis at {settings.url} is version {info.get('redis_version')}; Flue needs"
                f" {'.'.join(map(str, MIN_SERVER_VERSION))} or newer.",
                details={"url": settings.url, "version": info.get("redis_version")},
            )
    except BaseException:
        await client.aclose()
        raise
    return client


async def load_script(client: aioredis.Redis, settings: RedisSettings, name: str) -> AsyncScript:
    """The Lua script ``flue_node_like/lua/<name>``, loaded into the server (``SCRIPT LOAD``, which also
    compiles it, so a broken script fails here and not at the first call).

    Scripts are called by their SHA-1 (``EVALSHA``), which is also their version: processes running
    different releases against one Redis each call their own code. A server that lost its script cache
    (a restart, a failover, ``SCRIPT FLUSH``) answers ``NOSCRIPT`` and the script is loaded again, then
    called — redis-py's :class:`~redis.commands.core.AsyncScript` does that.
    """
    source = resources.files("flue_node_like").joinpath("lua", name).read_text(encoding="utf-8")
    script = client.register_script(source)
    with redis_errors(settings):
        await client.script_load(source)
    return script


@contextmanager
def redis_errors(settings: RedisSettings, *, connecting: bool = False) -> Iterator[None]:
    """Raise redis-py's errors as :class:`~flue_core.errors.FlueError`: error replies as
    :func:`reply_error` says, a lost or unreachable server as :class:`StoreUnavailable` (a write that
    failed that way may or may not have been applied)."""
    shown = settings.url
    try:
        yield
    except redis_exceptions.AuthenticationError as exc:
        raise ConfigurationError(
            f"Redis at {shown} refused the credentials: {exc}", details={"url": shown}
        ) from None
    except redis_exceptions.ResponseError as exc:
        raise reply_error(str(exc), shown) from None
    except (redis_exceptions.RedisError, OSError) as exc:
        what = "Cannot reach" if connecting else "Lost the connection to"
        raise StoreUnavailable(f"{what} Redis at {shown}: {exc}", details={"url": shown}) from None


def reply_error(message: str, shown: str) -> ConfigurationError | StoreUnavailable:
    """The typed error of an error reply from Redis at ``shown``: refused credentials, a database it
    lacks, and a key of the prefix holding another kind of value (something other than Flue writes
    under it) are :class:`ConfigurationError`; the rest :class:`StoreUnavailable`."""
    if message.startswith(_REFUSED) or "DB index is out of range" in message:
        return ConfigurationError(f"Redis at {shown} refused the connection: {message}", details={"url": shown})
    if "WRONGTYPE" in message:  # at the start from Redis 7, inside a script's error before
        return ConfigurationError(
            f"Keys under the prefix of {shown} hold data Flue did not write ({message}): give Flue a key"
            " prefix of its own (?prefix=).",
            details={"url": shown},
        )
    return StoreUnavailable(f"Redis at {shown} failed: {message}", details={"url": shown})


def _query(query: str, shown: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS:
            raise ConfigurationError(
                f"Unknown option {name!r} in the Redis URL {shown}; known: {', '.join(_OPTIONS)}.",
                details={"url": shown, "option": name},
            )
        if name in options:
            raise ConfigurationError(f"The option {name!r} is repeated in {shown}.", details={"url": shown})
        options[name] = value
    return options


def _number(text: str, name: str, shown: str, kind: type, *, minimum: float = 0) -> Any:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not value >= minimum or (kind is float and not value > 0):
        raise ConfigurationError(
            f"{name} must be a {'non-negative integer' if kind is int else 'number of seconds > 0'},"
            f" not {text!r} ({shown}).",
            details={"url": shown, "option": name},
        )
    return value


def _seconds(text: str, name: str, shown: str, maximum: float, scale: float = 1) -> float:
    """A finite number of seconds > 0 and at most ``maximum`` (``inf`` would let a silent server
    block a call forever)."""
    value = _number(text, name, shown, float) * scale
    if not math.isfinite(value) or value > maximum:
        raise ConfigurationError(
            f"{name} must be a finite number of seconds up to {maximum:.0f}, not {text!r} ({shown}).",
            details={"url": shown, "option": name},
        )
    return value


def _optional_int(text: str | None, shown: str) -> int | None:
    if text is None:
        return None
    value = _number(text, "max_connections", shown, int)
    if value < 1:
        raise ConfigurationError(f"max_connections must be >= 1, not {text!r} ({shown}).", details={"url": shown})
    return value


def _retention(text: str | None, shown: str) -> float | None:
    if text is None:
        return None
    unit = _UNITS.get(text[-1:], None)
    return _seconds(text[:-1] if unit else text, "retention", shown, MAX_RETENTION, unit or 1)


def _redacted(url: str) -> str:
    """``url`` with everything before the host that may hold credentials replaced by ``***``.

    The credentials end at the last ``@`` after the scheme, whatever reserved characters the password
    holds unencoded (``/``, ``?``, ``#``): guessing where a URL parser would cut them is how a piece of
    a password gets shown."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"
